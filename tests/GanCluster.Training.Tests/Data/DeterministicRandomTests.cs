using GanCluster.Training.Data;

namespace GanCluster.Training.Tests.Data;

public sealed class DeterministicRandomTests
{
    [Fact]
    public void SplitMix64_matches_the_reference_sequence()
    {
        // The reference SplitMix64 from state 0 starts e220a8397b1dcdaf, 6e789e6aa1b965f4.
        ulong state = 0;
        Assert.Equal(0xE220A8397B1DCDAFUL, DeterministicRandom.SplitMix64(ref state));
        Assert.Equal(0x6E789E6AA1B965F4UL, DeterministicRandom.SplitMix64(ref state));
    }

    [Fact]
    public void Same_seed_same_stream_different_seed_different_stream()
    {
        var a = new DeterministicRandom(123);
        var b = new DeterministicRandom(123);
        var c = new DeterministicRandom(124);
        var sa = Enumerable.Range(0, 100).Select(_ => a.NextUInt64()).ToArray();
        var sb = Enumerable.Range(0, 100).Select(_ => b.NextUInt64()).ToArray();
        var sc = Enumerable.Range(0, 100).Select(_ => c.NextUInt64()).ToArray();
        Assert.Equal(sa, sb);
        Assert.NotEqual(sa, sc);
    }

    [Fact]
    public void Stream_is_pinned_across_versions()
    {
        // Checkpointed cursors and synthetic data depend on this exact stream: changing the generator breaks them.
        var r = new DeterministicRandom(42);
        Assert.Equal(PinnedFirst42, r.NextUInt64());
    }

    // First NextUInt64() of DeterministicRandom(42): xoshiro256** seeded by SplitMix64(42), checked against an independent implementation.
    const ulong PinnedFirst42 = 0x15780B2E0C2EC716UL;

    [Fact]
    public void NextDouble_is_in_unit_interval_and_uniform()
    {
        var r = new DeterministicRandom(5);
        var values = Enumerable.Range(0, 20000).Select(_ => r.NextDouble()).ToArray();
        Assert.All(values, v => Assert.InRange(v, 0.0, 0.9999999999999999));
        Assert.InRange(values.Average(), 0.49, 0.51);
    }

    [Fact]
    public void NextInt_is_in_range_and_hits_every_value()
    {
        var r = new DeterministicRandom(6);
        var counts = new int[7];
        for (var i = 0; i < 7000; i++) counts[r.NextInt(7)]++;
        Assert.All(counts, n => Assert.InRange(n, 850, 1150));
        Assert.Equal(0, r.NextInt(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => r.NextInt(0));
    }

    [Fact]
    public void NextGaussian_has_zero_mean_and_unit_std()
    {
        var r = new DeterministicRandom(7);
        var values = Enumerable.Range(0, 40000).Select(_ => r.NextGaussian()).ToArray();
        var mean = values.Average();
        var std = Math.Sqrt(values.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, -0.02, 0.02);
        Assert.InRange(std, 0.98, 1.02);
        Assert.All(values, v => Assert.True(double.IsFinite(v)));
    }

    [Fact]
    public void Shuffle_gives_a_permutation_that_depends_on_the_seed()
    {
        var a = Enumerable.Range(0, 50).ToArray();
        var b = Enumerable.Range(0, 50).ToArray();
        new DeterministicRandom(1).Shuffle(a);
        new DeterministicRandom(2).Shuffle(b);
        Assert.Equal(Enumerable.Range(0, 50), a.Order());
        Assert.Equal(Enumerable.Range(0, 50), b.Order());
        Assert.NotEqual(Enumerable.Range(0, 50), a);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Mix_separates_streams()
    {
        var seeds = Enumerable.Range(0, 1000).Select(e => DeterministicRandom.Mix(17, e)).ToHashSet();
        Assert.Equal(1000, seeds.Count);
        Assert.NotEqual(DeterministicRandom.Mix(17, 0), DeterministicRandom.Mix(18, 0));
        Assert.Equal(DeterministicRandom.Mix(17, 3), DeterministicRandom.Mix(17, 3));
    }
}
