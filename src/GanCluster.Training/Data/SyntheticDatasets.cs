using static TorchSharp.torch;

namespace GanCluster.Training.Data;

/// <summary>
/// The two 2-D Gaussian mixtures of the mode-collapse literature, with equal mode weights.
/// <para>
/// Unlike the image loaders, these points are NOT scaled to [-1, 1]: they are returned as is (the ring has
/// radius 1, the grid spans [-4, 4]²), so a generator for them needs an unbounded (linear) output, and quality
/// metrics compare against <see cref="Ring8Modes"/> / <see cref="Grid25Modes"/> with the std constants below.
/// </para>
/// Samples depend only on (count, seed): each sample picks its mode uniformly at random, then adds isotropic
/// Gaussian noise, both drawn from <see cref="DeterministicRandom"/>.
/// </summary>
public static class SyntheticDatasets
{
    /// <summary>Standard deviation of each of the 8 ring Gaussians.</summary>
    public const float Ring8Std = 0.01f;

    /// <summary>Standard deviation of each of the 25 grid Gaussians.</summary>
    public const float Grid25Std = 0.05f;

    static readonly (float X, float Y)[] Ring8Centres = MakeRing();
    static readonly (float X, float Y)[] Grid25Centres = MakeGrid();

    /// <summary>The 8 ring centres (cos 2πi/8, sin 2πi/8), i = 0..7. A fresh copy on every call.</summary>
    public static (float X, float Y)[] Ring8Modes => (ValueTuple<float, float>[])Ring8Centres.Clone();

    /// <summary>The 25 grid centres {-4,-2,0,2,4}², x-major (index = 5·ix + iy). A fresh copy on every call.</summary>
    public static (float X, float Y)[] Grid25Modes => (ValueTuple<float, float>[])Grid25Centres.Clone();

    /// <summary><paramref name="count"/> points [count, 2] from the 8-Gaussian ring (std <see cref="Ring8Std"/>); not scaled.</summary>
    public static SampleSet Ring8(int count, long seed) => Mixture(Ring8Centres, Ring8Std, count, seed, $"ring8(count={count}, seed={seed})");

    /// <summary><paramref name="count"/> points [count, 2] from the 5×5 Gaussian grid (std <see cref="Grid25Std"/>); not scaled.</summary>
    public static SampleSet Grid25(int count, long seed) => Mixture(Grid25Centres, Grid25Std, count, seed, $"grid25(count={count}, seed={seed})");

    static SampleSet Mixture((float X, float Y)[] centres, float std, int count, long seed, string source)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var rng = new DeterministicRandom(seed);
        var points = new float[checked(count * 2)];
        for (var i = 0; i < count; i++)
        {
            var (cx, cy) = centres[rng.NextInt(centres.Length)];
            points[2 * i] = (float)(cx + std * rng.NextGaussian());
            points[2 * i + 1] = (float)(cy + std * rng.NextGaussian());
        }
        return new SampleSet(tensor(points, [count, 2]), source);
    }

    static (float X, float Y)[] MakeRing()
    {
        var modes = new (float X, float Y)[8];
        for (var i = 0; i < 8; i++)
        {
            var angle = 2.0 * Math.PI * i / 8;
            modes[i] = ((float)Math.Cos(angle), (float)Math.Sin(angle));
        }
        return modes;
    }

    static (float X, float Y)[] MakeGrid()
    {
        var modes = new (float X, float Y)[25];
        for (var ix = 0; ix < 5; ix++)
            for (var iy = 0; iy < 5; iy++)
                modes[5 * ix + iy] = (-4f + 2f * ix, -4f + 2f * iy);
        return modes;
    }
}
