using GanCluster.Training.Spec;

namespace GanCluster.Engine;

/// <summary>
/// When a run logs, writes samples and checkpoints: the same boundaries for a local run and for the coordinator, which
/// lets workers train uninterrupted from one boundary to the next.
/// </summary>
public sealed record Cadence(long Iterations, int LogEvery, int SampleEvery, int CheckpointEvery)
{
    public static Cadence Of(RunSpec spec)
    {
        var t = spec.Training;
        return new Cadence(t.Iterations, t.LogEvery, t.SampleEvery > 0 ? t.SampleEvery : spec.Checkpoint.Every, spec.Checkpoint.Every);
    }

    public bool IsLog(long done) => done % LogEvery == 0 || done == Iterations;
    public bool IsSamples(long done) => done % SampleEvery == 0 || done == Iterations;
    public bool IsCheckpoint(long done) => done % CheckpointEvery == 0 || done == Iterations;
    public bool IsSave(long done) => IsSamples(done) || IsCheckpoint(done);

    /// <summary>The first boundary (a log line, samples, a checkpoint or the end) after <paramref name="done"/> iterations.</summary>
    public long NextBoundary(long done)
    {
        static long After(long done, int every) => (done / every + 1) * every;
        return Math.Min(Iterations, Math.Min(After(done, LogEvery), Math.Min(After(done, SampleEvery), After(done, CheckpointEvery))));
    }
}

/// <summary>How a run's global batch is dealt over its workers (<c>training.batchMode</c>).</summary>
public static class BatchSplit
{
    /// <summary>Global batch B over W workers: B/W each, the remainder to the lowest ranks.</summary>
    public static int[] Even(int batch, int workers) =>
        Enumerable.Range(0, workers).Select(r => batch / workers + (r < batch % workers ? 1 : 0)).ToArray();

    /// <summary>Per-worker batches for a world of <paramref name="workers"/>: split the global batch, or a fixed batch per worker.</summary>
    public static int[] For(TrainingSpec training, int perWorkerBatch, int workers) =>
        training.BatchMode == "per-worker" ? Enumerable.Repeat(perWorkerBatch, workers).ToArray() : Even(training.BatchSize, workers);
}

/// <summary>The failure budget: at most <c>training.maxFailuresPerHour</c> worker failures within any hour.</summary>
public static class FailureBudget
{
    /// <summary>The failures of the last hour including one at <paramref name="now"/>, and whether the budget is spent.</summary>
    public static (IReadOnlyList<DateTimeOffset> Failures, bool Spent) Count(IEnumerable<DateTimeOffset> failures, DateTimeOffset now, int maxPerHour)
    {
        var recent = failures.Append(now).Where(f => f >= now - TimeSpan.FromHours(1)).ToList();
        return (recent, recent.Count > maxPerHour);
    }
}
