using System.Globalization;
using System.Text.RegularExpressions;
using GanCluster.Engine;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Quality;
using GanCluster.Training.Spec;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests.Quality;

/// <summary>Scores during a local run, and <c>gancluster eval</c> as a user runs it (a real process).</summary>
[Collection(LabelledCollection.Name)]
public sealed partial class QualityRunTests(LabelledFixture fixture)
{
    RunSpec Tiny(string output, string quality = "off", bool keepBest = false) => new()
    {
        Name = "tiny-quality",
        Dataset = fixture.Dataset,
        Model = new ModelSpec { Kind = "dcgan", Nz = 8, Ngf = 4, Ndf = 4 },
        Training = new TrainingSpec { Iterations = 4, BatchSize = 16, LogEvery = 2, Seed = 3 },
        Checkpoint = new CheckpointSpec { Every = 2, Keep = 1, KeepBest = keepBest },
        Evaluation = new EvaluationSpec { Quality = quality, Samples = 200 },
        Output = output,
    };

    static double Score(QualityClassifier classifier, string checkpoint, int count, long seed)
    {
        var state = CheckpointStore.ReadState(checkpoint);
        using var replica = new GanReplica(state.Spec, CPU, 0);
        CheckpointStore.Restore(checkpoint, replica, state, optimizers: false);
        return ImageQuality.Score(classifier, replica, count, seed).FrechetDistance;
    }

    [Fact]
    public void A_run_with_quality_at_saves_scores_each_save_and_keeps_the_best_checkpoint()
    {
        using var dir = new TempFolder();
        var spec = Tiny(Path.Combine(dir.Path, "run"), "saves", keepBest: true);
        Assert.Empty(RunSpecValidator.Validate(spec));
        var log = new StringWriter();
        new LocalTrainer(spec, CPU, log) { QualityCacheDir = fixture.CacheDir }.Run();
        var text = log.ToString();

        Assert.Contains("quality classifier: cached", text);   // the fixture's classifier, not trained again
        Assert.Matches(@"quality 2: FD \d+\.\d\d, class KL \d+\.\d{3}, confident \d+\.\d % of 200", text);
        Assert.Matches(@"quality 4: FD ", text);
        var rows = MetricsCsv.Read(Path.Combine(spec.Output, "metrics.csv"));
        var quality = rows.Where(r => r.IsQuality).ToList();
        Assert.Equal([2L, 4], quality.Select(r => r.Iteration));
        Assert.All(quality, r =>
        {
            Assert.True(r.Fid > 0 && r.ClassKl >= 0 && r.Confident is >= 0 and <= 1, $"{r}");
            Assert.Null(r.Modes);
        });
        Assert.Equal(2, rows.Count(r => !r.IsQuality && r.LossD is not null));
        // The same scores in TensorBoard, at the same steps.
        var events = GanCluster.Tests.Shared.TfEvents.ReadFolder(TensorBoardLog.PathOf(spec.Output));
        foreach (var (tag, column) in new (string, Func<MetricsRecord, double?>)[] { ("quality/fid", r => r.Fid), ("quality/class_kl", r => r.ClassKl), ("quality/confident_share", r => r.Confident) })
        {
            var points = events.Where(p => p.Tag == tag).ToList();
            Assert.Equal(quality.Select(r => r.Iteration), points.Select(p => p.Step));
            // metrics.csv keeps 6 significant digits, TensorBoard a float.
            foreach (var (r, p) in quality.Zip(points)) Assert.Equal(column(r)!.Value, p.Value!.Value, Math.Abs(column(r)!.Value) * 1e-5 + 1e-7);
        }

        // The best is the lower distance, kept beside the newest (keep 1).
        var best = BestCheckpoint.Read(spec.Output)!;
        var lowest = quality.MinBy(r => r.Fid)!;
        Assert.Equal(("fid", lowest.Iteration), (best.Metric, best.Iteration));
        Assert.True(Directory.Exists(CheckpointStore.PathOf(spec.Output, best.Iteration)));
        Assert.True(Directory.Exists(CheckpointStore.PathOf(spec.Output, 4)));

        // The score logged at iteration 4 is the score of the checkpoint written there (same z, same classifier).
        var again = Score(fixture.Classifier, CheckpointStore.PathOf(spec.Output, 4), 200, ImageQuality.DefaultSeed);
        Assert.Equal(quality[1].Fid!.Value, again, again * 1e-5);
    }

    [Fact]
    public void Eval_prints_the_classifier_accuracy_and_the_scores_of_a_trained_run()
    {
        using var dir = new TempFolder();
        var spec = Tiny(Path.Combine(dir.Path, "run"));
        new LocalTrainer(spec, CPU, TextWriter.Null).Run();
        var env = new Dictionary<string, string> { [QualityClassifier.CacheVariable] = fixture.CacheRoot };

        var r = GanCluster.Tests.Shared.CliProcess.Run(["eval", "--run", spec.Output, "--count", "300", "--seed", "4", "--device", "cpu"], env);

        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("quality classifier: cached", r.StdOut);
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"classifier: held-out accuracy {fixture.Classifier.Info.Accuracy:P1} of 200 real images"), r.StdOut);
        var m = ScoreLine().Match(r.StdOut);
        Assert.True(m.Success, r.StdOut);
        var printed = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        var expected = Score(fixture.Classifier, CheckpointStore.PathOf(spec.Output, 4), 300, seed: 4);
        Assert.Equal(Math.Round(expected, 2), printed, 2);
        Assert.Contains("of 300", m.Value);

        // --real: held-out real images against the real reference, far closer than a 4-iteration generator.
        var real = GanCluster.Tests.Shared.CliProcess.Run(["eval", "--run", spec.Output, "--real", "--device", "cpu"], env);
        Assert.True(real.ExitCode == 0, real.StdOut + real.StdErr);
        var rm = RealLine().Match(real.StdOut);
        Assert.True(rm.Success, real.StdOut);
        Assert.True(double.Parse(rm.Groups[1].Value, CultureInfo.InvariantCulture) < printed / 10, real.StdOut + r.StdOut);
    }

    [Fact]
    public void Eval_refuses_what_it_cannot_score_and_rates_2d_runs_by_mode_coverage()
    {
        using var dir = new TempFolder();
        var env = new Dictionary<string, string> { [QualityClassifier.CacheVariable] = fixture.CacheRoot };
        string[] Eval(string run, params string[] more) => ["eval", "--run", run, "--device", "cpu", .. more];

        var empty = Directory.CreateDirectory(Path.Combine(dir.Path, "empty")).FullName;
        var none = GanCluster.Tests.Shared.CliProcess.Run(Eval(empty), env);
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("no valid checkpoint", none.StdErr);

        // Images without a label file beside them: trains fine, cannot be scored.
        var unlabelled = Directory.CreateDirectory(Path.Combine(dir.Path, "unlabelled")).FullName;
        File.Copy(fixture.ImagesFile, Path.Combine(unlabelled, "train-images-idx3-ubyte.gz"));
        var spec = Tiny(Path.Combine(dir.Path, "run-unlabelled")) with { Dataset = fixture.Dataset with { Path = unlabelled } };
        new LocalTrainer(spec, CPU, TextWriter.Null).Run();
        var noLabels = GanCluster.Tests.Shared.CliProcess.Run(Eval(spec.Output), env);
        Assert.Equal(2, noLabels.ExitCode);
        Assert.Contains("no label file", noLabels.StdErr);
        Assert.Single(noLabels.StdErr.Trim().Split('\n'));   // one message, no stack trace

        var few = GanCluster.Tests.Shared.CliProcess.Run(Eval(spec.Output, "--count", "10"), env);
        Assert.Equal(2, few.ExitCode);
        Assert.Contains("--count must be at least 200", few.StdErr);

        var ring = TinySpecs.Ring8(Path.Combine(dir.Path, "ring"), iterations: 40);
        new LocalTrainer(ring, CPU, TextWriter.Null).Run();
        var modes = GanCluster.Tests.Shared.CliProcess.Run(Eval(ring.Output, "--count", "500"), env);
        Assert.True(modes.ExitCode == 0, modes.StdOut + modes.StdErr);
        Assert.Matches(@"mode quality at iteration 40: modes \d+/8, high-quality [\d.]+ % of 500", modes.StdOut);
    }

    [GeneratedRegex(@"quality at iteration 4: FD (\d+\.\d\d), class KL \d+\.\d{3}, confident \d+\.\d % of \d+")]
    private static partial Regex ScoreLine();

    [GeneratedRegex(@"real held-out images: FD (\d+\.\d\d)")]
    private static partial Regex RealLine();
}
