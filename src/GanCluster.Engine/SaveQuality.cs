using System.Diagnostics;
using System.Globalization;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Quality;
using GanCluster.Training.Spec;

namespace GanCluster.Engine;

/// <summary>
/// What a local run does about quality at each save: with <c>evaluation.quality</c> <c>saves</c>, scores G with the
/// dataset's classifier (trained or read from the cache when the run starts); writes the quality row of metrics.csv
/// (image scores, or a 2-D run's mode coverage at sample saves); and with <c>checkpoint.keepBest</c> records the best
/// checkpoint so that pruning spares it. Scoring runs on the training thread: training waits for it (about
/// <c>evaluation.samples</c> generator and classifier forward passes).
/// </summary>
public sealed class SaveQuality : IDisposable
{
    readonly RunSpec _spec;
    readonly string _output;
    readonly TextWriter _log;
    readonly QualityClassifier? _classifier;

    /// <param name="cacheDir">The classifier cache (default <see cref="QualityClassifier.CacheDir"/>); tests pass their own.</param>
    public SaveQuality(RunSpec spec, string output, TextWriter log, string? cacheDir = null)
    {
        (_spec, _output, _log) = (spec, output, log);
        if (spec.Evaluation.Quality == "saves") _classifier = QualityClassifier.ForDataset(spec.Dataset, log, cacheDir);
        // keepBest off (now): a best recorded by an earlier run of this folder must not keep sparing a checkpoint.
        BestCheckpoint.Reset(output, spec.Checkpoint.KeepBest);
    }

    /// <summary>The last image score (null before the first, or without <c>evaluation.quality</c> <c>saves</c>).</summary>
    public ImageQualityResult? Last { get; private set; }

    /// <summary>At a save of <paramref name="iteration"/>; <paramref name="modes"/> is the 2-D samples' quality when samples were written.</summary>
    public void At(long iteration, double elapsedSeconds, bool checkpoint, ModeQualityResult? modes, GanReplica replica, MetricsCsv metrics,
        TensorBoardLog? tensorBoard = null)
    {
        QualityColumns? columns = null;
        if (_classifier is not null)
        {
            var clock = Stopwatch.StartNew();
            Last = ImageQuality.Score(_classifier, replica, _spec.Evaluation.Samples, ImageQuality.DefaultSeed);
            columns = QualityColumns.Of(Last);
            tensorBoard?.Quality(iteration, Last);
            _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    quality {iteration}: {Last} (scored in {clock.Elapsed.TotalSeconds:F1} s)"));
        }
        else if (modes is not null)
        {
            columns = QualityColumns.Of(modes);
        }
        if (columns is null) return;
        metrics.AppendQuality(iteration, elapsedSeconds, columns);
        if (checkpoint && _spec.Checkpoint.KeepBest)
        {
            var best = BestCheckpoint.Offer(_output, BestCheckpoint.Of(iteration, columns));
            if (best.Iteration == iteration) _log.WriteLine($"    best checkpoint so far: {iteration} (kept besides the newest {_spec.Checkpoint.Keep})");
        }
    }

    public void Dispose() => _classifier?.Dispose();
}
