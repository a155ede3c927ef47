using System.Collections.Immutable;
using System.Text.Json;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Engine.Coordinator;

/// <summary>A registered worker: its id (node address and device), its device and its data-plane address.</summary>
public sealed record WorkerInfo(string WorkerId, string Device, string DataHost, int DataPort);

/// <summary>Limits the coordinator enforces; typed options on the seed.</summary>
public sealed record CoordinatorSettings(TimeSpan PrepareTimeout, TimeSpan StepTimeout, int ChecksumEvery)
{
    /// <summary>After a restart, how long to wait for the previous number of workers before resuming with fewer.</summary>
    public TimeSpan ResumeGrace { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>What a spec's relative <c>output</c> is under (the seed's working directory), so clients are told full paths; null: as given.</summary>
    public string? OutputRoot { get; init; }
    /// <summary>The most memory a submitted run may need by its spec's estimate (Node:MaxRunMemoryGB).</summary>
    public double MemoryLimitBytes { get; init; } = Training.Models.ModelMemory.DefaultLimitBytes;
}

/// <summary>The coordinator's part of a checkpoint (coordinator.json): what a restarted coordinator needs to go on.</summary>
public sealed record CoordinatorCheckpoint(string RunId, long Iteration, long SamplesConsumed, int WorldSize, int PerWorkerBatch,
    DateTimeOffset[] Failures, long SkippedTotal)
{
    public string ToJson() => JsonSerializer.Serialize(this, RunSpec.Json);
    public static CoordinatorCheckpoint? FromJson(string json) => JsonSerializer.Deserialize<CoordinatorCheckpoint>(json, RunSpec.Json);
}

/// <summary>
/// The run a coordinator is responsible for, kept on disk (Node:StateDir) until it ends. <paramref name="CancelledBy"/>:
/// a cancel was accepted, so a coordinator that takes over ends the run instead of resuming it.
/// </summary>
public sealed record RunRecord(string RunId, string Output, string SpecJson, string? CancelledBy = null);

/// <summary>Inputs: everything that can happen to the coordinator. <c>Now</c> comes from outside to keep Handle pure.</summary>
public abstract record CoordinatorInput
{
    public sealed record WorkerUp(WorkerInfo Worker, DateTimeOffset Now = default) : CoordinatorInput;
    public sealed record WorkerDown(string WorkerId, string Why, DateTimeOffset Now = default) : CoordinatorInput;
    public sealed record Submit(string SpecJson, long Formation, DateTimeOffset Now) : CoordinatorInput;
    public sealed record FromWorker(IGanClusterMessage Message, DateTimeOffset Now) : CoordinatorInput;
    /// <summary>Outputs of an iteration of run <c>RunId</c> published (or failed; iteration -1: opening its outputs), with the samples' mode quality on ring8/grid25.</summary>
    public sealed record ArtifactsDone(string RunId, long Iteration, string? Error, string? Quality = null) : CoordinatorInput;
    /// <summary>A timer set by <see cref="Effect.Schedule"/> fired; ignored unless it is still the current one.</summary>
    public sealed record TimerFired(long Token, DateTimeOffset Now = default) : CoordinatorInput;
    /// <summary>The coordinator (re)started and found a run it had not finished.</summary>
    public sealed record Recover(RunRecord Record, long Formation, DateTimeOffset Now) : CoordinatorInput;
    /// <summary>
    /// Answer to <see cref="Effect.FindCheckpoint"/> of <paramref name="Output"/>: the newest valid checkpoint, and the ones
    /// skipped (with why); or the IO <paramref name="Error"/> that kept the search from finishing.
    /// </summary>
    public sealed record CheckpointFound(string? Path, CoordinatorCheckpoint? State, string[] Skipped, string? Output = null, string? Error = null)
        : CoordinatorInput;
    /// <summary>A client asks to follow a run (again): after a reconnect, or after the coordinator moved.</summary>
    public sealed record Watch(string RunId) : CoordinatorInput;
    /// <summary>A client asks to stop a run; it ends at the next iteration boundary on a checkpoint.</summary>
    public sealed record Cancel(string RunId, string By, DateTimeOffset Now = default) : CoordinatorInput;
}

/// <summary>What the actor must do for a decision.</summary>
public abstract record Effect
{
    public sealed record ToWorker(string WorkerId, IGanClusterMessage Message) : Effect;
    /// <summary>Reply to whoever sent the input being handled.</summary>
    public sealed record Respond(IGanClusterMessage Message) : Effect;
    /// <summary>To the clients watching the run.</summary>
    public sealed record Publish(IGanClusterMessage Message) : Effect;
    /// <summary>Whoever sent the input being handled watches the run from now on.</summary>
    public sealed record AddWatcher : Effect;
    public sealed record Schedule(long Token, TimeSpan Delay) : Effect;
    /// <summary>Open the run's outputs; with <paramref name="ResumeAt"/>, metrics rows after that iteration are dropped (they are trained again).</summary>
    public sealed record StartOutput(string RunId, string Output, string SpecJson, long? ResumeAt = null) : Effect;
    /// <summary>A metrics row; <paramref name="AllReduceMs"/>: the window's mean all-reduce time per update over the ranks (TensorBoard only).</summary>
    public sealed record AppendMetrics(MetricsRow Row, double AllReduceMs = 0) : Effect;
    /// <summary>An entry of the coordinator's event log.</summary>
    public sealed record Log(string Text, bool Warning = false) : Effect;
    /// <summary>A segment ended: every one of these ranks applied the updates through this one.</summary>
    public sealed record Committed(StepKey Step, int[] Ranks) : Effect;
    /// <summary>Keep the run on disk so that a restarted coordinator resumes it.</summary>
    public sealed record PersistRun(RunRecord Record) : Effect;
    /// <summary>The run has ended: nothing to resume.</summary>
    public sealed record ForgetRun(string RunId) : Effect;
    /// <summary>Look for the newest valid checkpoint under the output; answer with <see cref="CoordinatorInput.CheckpointFound"/>.</summary>
    public sealed record FindCheckpoint(string Output) : Effect;
}

/// <summary>
/// What the coordinator is doing, with the data that only this phase needs (as Akka's ClusterSingletonManager keeps one
/// data class per state): a worker's reply is matched against the phase that expects it, never against a field that
/// another phase left behind.
/// </summary>
public abstract record Stage
{
    /// <summary>The status a client sees.</summary>
    public abstract RunState State { get; }

    public sealed record Idle : Stage
    {
        public override RunState State => RunState.Idle;
    }

    public sealed record Failed : Stage
    {
        public override RunState State => RunState.Failed;
    }

    /// <summary>A formation loads its data and connects its ring; <paramref name="Pending"/>: ranks not ready yet.</summary>
    public sealed record Starting(ImmutableHashSet<int> Pending) : Stage
    {
        public override RunState State => RunState.Starting;
    }

    /// <summary>
    /// The workers train a segment up to iteration <paramref name="Until"/>; <paramref name="Ends"/>: the ranks that
    /// ended it so far. <paramref name="Yielding"/>: they were asked to stop at the next iteration boundary.
    /// </summary>
    public sealed record Running(long Until, ImmutableHashSet<int> Pending, ImmutableDictionary<int, SegmentDone> Ends, bool Yielding) : Stage
    {
        public override RunState State => RunState.Running;
    }

    /// <summary>Rank 0 snapshots a save asked for at <paramref name="StartedAt"/> (training waits for that only).</summary>
    public sealed record Saving(DateTimeOffset StartedAt) : Stage
    {
        public override RunState State => RunState.Saving;
    }

    /// <summary>A worker was lost: the others were asked to stop; <paramref name="Answers"/> hold what each replica has.</summary>
    public sealed record Recovering(ImmutableHashSet<string> Pending, ImmutableDictionary<string, StepAborted> Answers) : Stage
    {
        public override RunState State => RunState.Recovering;
    }

    /// <summary>
    /// Waiting for workers to go on from a checkpoint. <paramref name="Located"/>: the newest valid checkpoint has been
    /// looked for; <paramref name="Checkpoint"/>: the one rank 0 loads (null: none, train from the start);
    /// <paramref name="ExpectedWorkers"/>: how many workers to wait for (the checkpoint's world size).
    /// </summary>
    public sealed record Resuming(bool Located, string? Checkpoint, int ExpectedWorkers) : Stage
    {
        public override RunState State => RunState.Resuming;
    }

    /// <summary>Every iteration is trained; the workers report their final checksums and rank 0 saves the final outputs.</summary>
    public sealed record Finishing(ImmutableHashSet<int> Pending, ImmutableDictionary<int, string> Checksums, bool ArtifactsSaved) : Stage
    {
        public override RunState State => RunState.Finishing;
    }

    /// <summary>A cancelled run waits for the checkpoint it ends on.</summary>
    public sealed record Cancelling : Stage
    {
        public override RunState State => RunState.Cancelling;
    }
}

/// <summary>The run being driven: what holds in every phase (the phase's own data is in <see cref="Stage"/>).</summary>
public sealed record ActiveRun(
    string RunId,
    RunSpec Spec,
    string SpecJson,
    ImmutableArray<string> Ranks,
    ImmutableArray<int> LocalBatches,
    DateTimeOffset StartedAt,
    DateTimeOffset WindowStartedAt,
    long WindowStartIteration,
    long SkippedInWindow = 0,
    long ConsecutiveSkips = 0)
{
    public Cadence Cadence { get; init; } = Cadence.Of(Spec);
    public int WorldSize => Ranks.Length;
    /// <summary>The run's output folder on the seed: the spec's, under <see cref="CoordinatorSettings.OutputRoot"/> when relative.</summary>
    public string Output { get; init; } = "";
    /// <summary>The current formation's name; every message of it carries this.</summary>
    public long Formation { get; init; }
    /// <summary>The last update applied on every worker at the last boundary (null: none yet). A new formation continues after it.</summary>
    public StepKey? Committed { get; init; }
    /// <summary>Real samples drawn by the D updates up to <see cref="Committed"/>, over all ranks: a new formation's data position.</summary>
    public long SamplesConsumed { get; init; }
    /// <summary>Each worker's batch in batchMode per-worker (the global batch over the first world size).</summary>
    public int PerWorkerBatch { get; init; }
    /// <summary>When workers were lost or failed (the retry budget counts those of the last hour).</summary>
    public ImmutableList<DateTimeOffset> Failures { get; init; } = [];
    /// <summary>Workers that asked to leave; they are released at the next iteration boundary.</summary>
    public ImmutableHashSet<string> Leaving { get; init; } = [];
    public long SkippedTotal { get; init; }
    /// <summary>The iteration of the newest checkpoint asked for or resumed from (-1: none), and whether it is on disk.</summary>
    public long CheckpointAt { get; init; } = -1;
    public bool CheckpointWritten { get; init; }
    /// <summary>Mode quality of the newest published samples (ring8, grid25), e.g. "modes 8/8, high-quality 87.9 % of 2500".</summary>
    public string? Quality { get; init; }
    /// <summary>Who cancelled the run (null: nobody); it ends at the next iteration boundary on a checkpoint.</summary>
    public string? CancelledBy { get; init; }
    /// <summary>The one kind of device the run trains on (<c>cpu</c>, <c>cuda</c>); null until its first formation is chosen.</summary>
    public string? DeviceKind { get; init; }
    public long CompletedIterations => GanSchedule.IterationsThrough(Committed);
}
