using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace GanCluster.Actors.Telemetry;

/// <summary>
/// The node's instruments (System.Diagnostics.Metrics, meter <see cref="MeterName"/>). Recording costs next to nothing
/// while nothing listens; the node host publishes them in Prometheus format when Node:MetricsPort is set
/// (cluster-config/README.md lists each with its Prometheus name). Durations are in seconds, sizes in bytes.
/// </summary>
public static class NodeMetrics
{
    public const string MeterName = "GanCluster";
    public static readonly Meter Meter = new(MeterName);

    /// <summary>Histogram buckets in seconds, from sub-millisecond all-reduces of small models to minute-long saves.</summary>
    static readonly InstrumentAdvice<double> SecondBuckets = new()
    {
        HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    };

    // Worker.
    /// <summary>One update (a D or a G step: gradients, all-reduce, guard, optimizer step) on a worker; tags phase, device.</summary>
    public static readonly Histogram<double> UpdateDuration = Meter.CreateHistogram<double>("gancluster.worker.update.duration", "s",
        "Time of one training update on a worker (gradients, all-reduce, NaN guard, optimizer step)", advice: SecondBuckets);
    /// <summary>One ring all-reduce of a network's gradients; tag device.</summary>
    public static readonly Histogram<double> AllReduceDuration = Meter.CreateHistogram<double>("gancluster.allreduce.duration", "s",
        "Time of one gradient all-reduce over the ring", advice: SecondBuckets);
    public static readonly Counter<long> AllReduceBytes = Meter.CreateCounter<long>("gancluster.allreduce.payload", "By",
        "fp32 gradient bytes averaged by all-reduces (the payload; each rank sends about 2(n-1)/n of it, at the wire format's width)");
    /// <summary>From a worker's end of one segment to the start of its next: the coordinator's round trip plus the slowest other rank.</summary>
    public static readonly Histogram<double> CoordinatorWait = Meter.CreateHistogram<double>("gancluster.worker.coordinator_wait.duration", "s",
        "Time a worker waits between two segments: the coordinator's round trip plus the slowest other rank", advice: SecondBuckets);
    /// <summary>Rank 0's snapshot of a save (training is held for it; the upload runs in the background).</summary>
    public static readonly Histogram<double> SnapshotDuration = Meter.CreateHistogram<double>("gancluster.worker.checkpoint_snapshot.duration", "s",
        "Time rank 0 holds training to snapshot a save's outputs before uploading them in the background", advice: SecondBuckets);

    // Coordinator (the seed hosting the singleton).
    public static readonly Histogram<double> SaveStall = Meter.CreateHistogram<double>("gancluster.coordinator.checkpoint_stall.duration", "s",
        "Training held up by a save, from the coordinator's request to rank 0's snapshot", advice: SecondBuckets);
    /// <summary>Saves written or failed on the seed; tag outcome = written | failed.</summary>
    public static readonly Counter<long> Saves = Meter.CreateCounter<long>("gancluster.coordinator.checkpoint_saves", "{save}",
        "Saves of a run's outputs (checkpoint, samples) on the seed, by outcome");
    public static readonly Counter<long> WorkerFailures = Meter.CreateCounter<long>("gancluster.coordinator.worker_failures", "{failure}",
        "Worker failures (lost, timed out or failed) that a run recovered from or ended on");
    public static readonly Counter<long> Reforms = Meter.CreateCounter<long>("gancluster.coordinator.reforms", "{reform}",
        "New formations of a running run (after a failure, a join, a leave or a coordinator restart)");

    /// <summary>Seconds since a <see cref="Stopwatch"/> timestamp.</summary>
    public static double Since(long timestamp) => Stopwatch.GetElapsedTime(timestamp).TotalSeconds;
    public static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;
}
