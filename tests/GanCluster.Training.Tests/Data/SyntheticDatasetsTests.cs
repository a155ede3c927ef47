using GanCluster.Training.Data;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests.Data;

public sealed class SyntheticDatasetsTests
{
    public SyntheticDatasetsTests() => TorchSetup.Ensure();

    /// <summary>For each point, the index of the nearest mode and its per-coordinate offset from it.</summary>
    static (int[] Mode, float[] MaxAbsOffset) Nearest(SampleSet set, (float X, float Y)[] modes)
    {
        var points = set.Data.data<float>().ToArray();
        var nearest = new int[set.Count];
        var offset = new float[set.Count];
        for (var i = 0; i < set.Count; i++)
        {
            var best = float.MaxValue;
            for (var m = 0; m < modes.Length; m++)
            {
                var dx = points[2 * i] - modes[m].X;
                var dy = points[2 * i + 1] - modes[m].Y;
                var d = dx * dx + dy * dy;
                if (d < best)
                {
                    best = d;
                    nearest[i] = m;
                    offset[i] = Math.Max(Math.Abs(dx), Math.Abs(dy));
                }
            }
        }
        return (nearest, offset);
    }

    [Fact]
    public void Ring8_modes_are_on_the_unit_circle()
    {
        var modes = SyntheticDatasets.Ring8Modes;
        Assert.Equal(8, modes.Length);
        for (var i = 0; i < 8; i++)
        {
            Assert.Equal(Math.Cos(2 * Math.PI * i / 8), modes[i].X, 6);
            Assert.Equal(Math.Sin(2 * Math.PI * i / 8), modes[i].Y, 6);
        }
        Assert.Equal(0.01f, SyntheticDatasets.Ring8Std);
        // Callers get a copy: mutating it does not change the constants.
        modes[0] = (9f, 9f);
        Assert.Equal(1f, SyntheticDatasets.Ring8Modes[0].X);
    }

    [Fact]
    public void Grid25_modes_are_the_5x5_grid()
    {
        var modes = SyntheticDatasets.Grid25Modes;
        Assert.Equal(25, modes.Length);
        var expected = from x in new[] { -4f, -2f, 0f, 2f, 4f } from y in new[] { -4f, -2f, 0f, 2f, 4f } select (x, y);
        Assert.Equal(expected.OrderBy(p => p).ToArray(), modes.OrderBy(p => p).ToArray());
        Assert.Equal(0.05f, SyntheticDatasets.Grid25Std);
    }

    static float[] Values(SampleSet set) => set.Data.data<float>().ToArray();

    [Fact]
    public void Shape_and_determinism()
    {
        using var a = SyntheticDatasets.Ring8(1000, 42);
        using var b = SyntheticDatasets.Ring8(1000, 42);
        using var c = SyntheticDatasets.Ring8(1000, 43);
        Assert.Equal(new long[] { 1000, 2 }, a.Data.shape);
        Assert.Equal(ScalarType.Float32, a.Data.dtype);
        Assert.Equal(Values(a), Values(b));
        Assert.NotEqual(Values(a), Values(c));

        using var g1 = SyntheticDatasets.Grid25(500, 7);
        using var g2 = SyntheticDatasets.Grid25(500, 7);
        using var g3 = SyntheticDatasets.Grid25(500, 8);
        Assert.Equal(new long[] { 500, 2 }, g1.Data.shape);
        Assert.Equal(Values(g1), Values(g2));
        Assert.NotEqual(Values(g1), Values(g3));
    }

    [Fact]
    public void Ring8_samples_are_near_modes_and_modes_are_balanced()
    {
        using var set = SyntheticDatasets.Ring8(8000, 1234);
        var (mode, offset) = Nearest(set, SyntheticDatasets.Ring8Modes);
        Assert.All(offset, o => Assert.True(o < 5 * SyntheticDatasets.Ring8Std, $"offset {o}"));
        var counts = new int[8];
        foreach (var m in mode) counts[m]++;
        Assert.All(counts, n => Assert.InRange(n, 700, 1300));
        // The noise really has std ≈ 0.01 (not 0 and not larger).
        var modes = SyntheticDatasets.Ring8Modes;
        var points = set.Data.data<float>().ToArray();
        var sq = 0.0;
        for (var i = 0; i < set.Count; i++)
        {
            var dx = points[2 * i] - modes[mode[i]].X;
            sq += dx * dx;
        }
        Assert.InRange(Math.Sqrt(sq / set.Count), 0.009, 0.011);
    }

    [Fact]
    public void Grid25_samples_are_near_modes_unscaled_and_balanced()
    {
        using var set = SyntheticDatasets.Grid25(10000, 99);
        var (mode, offset) = Nearest(set, SyntheticDatasets.Grid25Modes);
        Assert.All(offset, o => Assert.True(o < 5 * SyntheticDatasets.Grid25Std, $"offset {o}"));
        var counts = new int[25];
        foreach (var m in mode) counts[m]++;
        Assert.All(counts, n => Assert.InRange(n, 300, 500));
        // Not scaled to [-1, 1]: the outer modes sit near ±4.
        Assert.True(set.Data.max().item<float>() > 3.8f);
        Assert.True(set.Data.min().item<float>() < -3.8f);
    }

    [Fact]
    public void Count_must_be_positive()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticDatasets.Ring8(0, 1));
        Assert.Equal("count", e.ParamName);
    }
}
