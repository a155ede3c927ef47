using GanCluster.Protocol;
using GanCluster.Training.Core;
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

    /// <summary>What to save after <paramref name="done"/> iterations (null: nothing).</summary>
    public SaveDecision? SaveAt(long done) => IsSave(done) ? new SaveDecision(IsSamples(done), IsCheckpoint(done)) : null;

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

/// <summary>What a run does after losing a worker, decided from what the survivors' replicas hold.</summary>
public abstract record FailureDecision
{
    /// <summary>
    /// Re-form from <paramref name="Position"/>: <paramref name="Holders"/> hold it (one of them becomes rank 0 and
    /// gives its state to the others), and the data position is <paramref name="SamplesConsumed"/>.
    /// </summary>
    public sealed record Reform(IReadOnlyList<string> Holders, StepKey? Position, long SamplesConsumed) : FailureDecision;

    /// <summary>No survivor holds the state: the run goes on from its newest checkpoint.</summary>
    public sealed record Resume : FailureDecision;
}

/// <summary>The failure policy: which state survivors go on from.</summary>
public static class FailurePolicy
{
    /// <summary>
    /// Inside a segment a replica is at most one update ahead of another (an all-reduce that completed on some ranks
    /// only), and every replica is at or after the last boundary, <paramref name="committed"/>. The survivors go on
    /// from the most advanced state one of them holds: every member can reach it, since rank 0 gives its state to all.
    /// The D updates since the boundary each drew one global batch of <paramref name="globalBatch"/> samples.
    /// </summary>
    public static FailureDecision AfterLoss(IEnumerable<(string WorkerId, StepKey? LastApplied)> replicas, StepKey? committed,
        long samplesAtCommitted, int globalBatch, int k)
    {
        var usable = replicas.Where(r => GanSchedule.UpdatesThrough(r.LastApplied, k) >= GanSchedule.UpdatesThrough(committed, k)).ToList();
        if (usable.Count == 0) return committed is null ? new FailureDecision.Reform([], null, 0) : new FailureDecision.Resume();
        var position = usable.MaxBy(r => GanSchedule.UpdatesThrough(r.LastApplied, k)).LastApplied;
        var samples = samplesAtCommitted + (GanSchedule.DiscriminatorUpdatesThrough(position, k)
                                            - GanSchedule.DiscriminatorUpdatesThrough(committed, k)) * globalBatch;
        return new FailureDecision.Reform([.. usable.Where(r => r.LastApplied == position).Select(r => r.WorkerId)], position, samples);
    }
}

/// <summary>What a boundary saves: samples, and a checkpoint or not.</summary>
public sealed record SaveDecision(bool Samples, bool Checkpoint);
