using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class QualityTests
{
    public QualityTests() => TorchSetup.Ensure();

    /// <summary>
    /// PacGAN's protocol on the built-in default (the README's first command): 2,500 samples, high quality =
    /// within 3 std of the nearest mode, a mode is covered if it is nearest to some high-quality sample.
    /// </summary>
    [Fact]
    public void Seeded_ring8_mlp_gan_covers_the_modes_with_high_quality_samples()
    {
        using var dir = new TempFolder();
        var spec = RunSpec.BuiltInDefault with { Output = dir.Path };
        var result = new LocalTrainer(spec, CPU, TextWriter.Null).Run();

        var q = result.Quality!;
        Assert.Equal(2500, q.Samples);
        Assert.True(q.ModesCovered >= 6, $"only {q}");
        Assert.True(q.HighQualityFraction >= 0.80, $"only {q}");

        // The same check from the written artefacts: the CSV of the last sample point.
        var csv = File.ReadAllLines(Path.ChangeExtension(result.LastSamples!, ".csv"));
        Assert.Equal("x,y", csv[0]);
        var xy = csv.Skip(1).SelectMany(l => l.Split(',').Select(v => float.Parse(v, System.Globalization.CultureInfo.InvariantCulture))).ToArray();
        var again = ModeQuality.Evaluate(xy, GanCluster.Training.Data.SyntheticDatasets.Ring8Modes, GanCluster.Training.Data.SyntheticDatasets.Ring8Std);
        Assert.Equal(q.ModesCovered, again.ModesCovered);
        Assert.Equal(q.HighQualityFraction, again.HighQualityFraction, 3);
    }
}
