namespace GanCluster.Training.Data;

/// <summary>
/// A small seeded pseudo-random generator that gives the same stream for the same seed on every platform and
/// runtime (unlike <see cref="Random"/>, whose algorithm is an implementation detail): xoshiro256** seeded
/// through SplitMix64. Integer and <see cref="NextDouble"/> outputs are bit-exact everywhere;
/// <see cref="NextGaussian"/> goes through Math.Log/Sqrt/Cos/Sin and so can differ in the last bit of a double
/// between C runtimes (invisible once scaled and rounded to float32 in practice). Not thread-safe.
/// </summary>
public sealed class DeterministicRandom
{
    ulong _s0, _s1, _s2, _s3;
    bool _hasSpare;
    double _spare;

    public DeterministicRandom(long seed)
    {
        var x = unchecked((ulong)seed);
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
        // xoshiro's state must not be all zero; SplitMix64 outputs four zeros for no seed, but guard anyway.
        if ((_s0 | _s1 | _s2 | _s3) == 0) _s0 = 0x9E3779B97F4A7C15;
    }

    /// <summary>One SplitMix64 step: advances <paramref name="state"/> and returns the mixed output.</summary>
    public static ulong SplitMix64(ref ulong state)
    {
        unchecked
        {
            state += 0x9E3779B97F4A7C15;
            var z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            return z ^ (z >> 31);
        }
    }

    /// <summary>
    /// Derives a seed for sub-stream <paramref name="stream"/> of <paramref name="seed"/> (e.g. one per epoch).
    /// For a fixed seed, different streams always give different derived seeds.
    /// </summary>
    public static long Mix(long seed, long stream)
    {
        unchecked
        {
            var x = (ulong)seed;
            var a = SplitMix64(ref x);
            var y = a ^ (ulong)stream;
            return (long)SplitMix64(ref y);
        }
    }

    /// <summary>The next 64 uniformly distributed bits.</summary>
    public ulong NextUInt64()
    {
        unchecked
        {
            var result = ulong.RotateLeft(_s1 * 5, 7) * 9;
            var t = _s1 << 17;
            _s2 ^= _s0;
            _s3 ^= _s1;
            _s1 ^= _s2;
            _s0 ^= _s3;
            _s2 ^= t;
            _s3 = ulong.RotateLeft(_s3, 45);
            return result;
        }
    }

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform integer in [0, <paramref name="maxExclusive"/>), without modulo bias.</summary>
    public int NextInt(int maxExclusive)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxExclusive, 1);
        var bound = (ulong)maxExclusive;
        // Lemire's multiply-and-reject: the high word of x * bound is uniform once the low word is out of the
        // biased zone [0, 2^64 mod bound).
        var high = Math.BigMul(NextUInt64(), bound, out var low);
        if (low < bound)
        {
            var threshold = unchecked(0 - bound) % bound;
            while (low < threshold) high = Math.BigMul(NextUInt64(), bound, out low);
        }
        return (int)high;
    }

    /// <summary>A standard normal sample (mean 0, std 1) by the Box–Muller transform; pairs are cached.</summary>
    public double NextGaussian()
    {
        if (_hasSpare)
        {
            _hasSpare = false;
            return _spare;
        }
        var u1 = 1.0 - NextDouble(); // (0, 1]: log stays finite
        var u2 = NextDouble();
        var r = Math.Sqrt(-2.0 * Math.Log(u1));
        var theta = 2.0 * Math.PI * u2;
        _spare = r * Math.Sin(theta);
        _hasSpare = true;
        return r * Math.Cos(theta);
    }

    /// <summary>Shuffles <paramref name="values"/> in place (Fisher–Yates), uniformly over all orders.</summary>
    public void Shuffle(Span<int> values)
    {
        for (var i = values.Length - 1; i > 0; i--)
        {
            var j = NextInt(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }
}
