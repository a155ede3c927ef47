using GanCluster.Training.Core;

namespace GanCluster.Training.Tests;

public class ModeQualityTests
{
    static readonly (float X, float Y)[] Modes = [(0, 0), (1, 0), (0, 1)];

    [Fact]
    public void Counts_high_quality_samples_and_covered_modes()
    {
        // std 0.1: within 0.3 of a mode is high quality.
        float[] xy =
        [
            0.05f, 0.0f,   // mode 0, high quality
            0.0f, 0.29f,   // mode 0, high quality
            1.2f, 0.0f,    // mode 1, high quality (0.2 away)
            0.5f, 0.5f,    // between modes: low quality
        ];
        var r = ModeQuality.Evaluate(xy, Modes, 0.1f);
        Assert.Equal(2, r.ModesCovered);
        Assert.Equal(3, r.Modes);
        Assert.Equal(0.75, r.HighQualityFraction, 6);
        Assert.Equal(4, r.Samples);
    }

    [Fact]
    public void A_low_quality_sample_does_not_cover_its_mode()
    {
        var r = ModeQuality.Evaluate([0f, 0.9f], Modes, 0.01f);
        Assert.Equal(0, r.ModesCovered);
        Assert.Equal(0, r.HighQualityFraction);
    }

    [Fact]
    public void A_samples_csv_reads_back_its_points_and_is_rated_against_its_dataset_mixture()
    {
        using var dir = new TempFolder();
        var path = Path.Combine(dir.Path, "samples", "iter-00000010.csv");
        // 50 points around each ring8 mode, within 1 std; plus one point far from every mode.
        var ring = GanCluster.Training.Data.SyntheticDatasets.Ring8Modes;
        var std = GanCluster.Training.Data.SyntheticDatasets.Ring8Std;
        var points = ring.SelectMany(m => Enumerable.Range(0, 50).SelectMany(k => new[] { m.X + std * MathF.Cos(k), m.Y + std * MathF.Sin(k) / 3 }))
            .Concat([9f, 9f]).ToArray();
        SampleCsv.Write(path, points);

        var read = SampleCsv.Read(path);
        Assert.Equal(points.Length, read.Length);
        Assert.All(points.Zip(read), p => Assert.Equal(p.First, p.Second, 1e-5f));          // 7 significant digits
        var q = SampleCsv.Quality(path, "ring8")!;
        Assert.Equal((8, 8, 401), (q.ModesCovered, q.Modes, q.Samples));
        Assert.Equal(400.0 / 401, q.HighQualityFraction, 9);                       // all but the far point
        Assert.Null(SampleCsv.Quality(path, "mnist"));                              // no mixture to rate against
    }
}
