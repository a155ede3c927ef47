using GanCluster.Training.Training;

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
}
