using System.Collections.Immutable;
using System.Text.Json;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Engine.Coordinator;

/// <summary>
/// The coordinator's explicit states (after Ray Train's controller). Starting: a formation connects its ring.
/// Recovering: a worker was lost; the update in flight is aborted everywhere. Resuming: the coordinator restarted
/// and waits for workers to continue the run from its newest valid checkpoint. Cancelling: a client cancelled the run;
/// the checkpoint it ends on is being written.
/// </summary>
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
    public sealed record AppendMetrics(MetricsRow Row) : Effect;
    /// <summary>An entry of the coordinator's event log.</summary>
    public sealed record Log(string Text, bool Warning = false) : Effect;
    /// <summary>The update was committed (applied) on these ranks.</summary>
    public sealed record Committed(StepKey Step, int[] Ranks) : Effect;
    /// <summary>Keep the run on disk so that a restarted coordinator resumes it.</summary>
    public sealed record PersistRun(RunRecord Record) : Effect;
    /// <summary>The run has ended: nothing to resume.</summary>
    public sealed record ForgetRun(string RunId) : Effect;
    /// <summary>Look for the newest valid checkpoint under the output; answer with <see cref="CoordinatorInput.CheckpointFound"/>.</summary>
    public sealed record FindCheckpoint(string Output) : Effect;
}

/// <summary>The run being driven.</summary>
public sealed record ActiveRun(
    string RunId,
    RunSpec Spec,
    string SpecJson,
    ImmutableArray<string> Ranks,
    ImmutableArray<int> LocalBatches,
    ImmutableHashSet<int> Pending,
    ImmutableDictionary<int, SegmentDone> Segments,
    ImmutableDictionary<int, string> FinalChecksums,
    bool FinalArtifactsSaved,
    DateTimeOffset StartedAt,
    DateTimeOffset WindowStartedAt,
    long WindowStartIteration,
    long SkippedInWindow = 0,
    long ConsecutiveSkips = 0)
{
    /// <summary>The iteration the running segment ends after (exclusive), on every rank unless some rank yields first.</summary>
    public long SegmentUntil { get; init; }
    /// <summary>The running segment was asked to end at the next iteration boundary.</summary>
    public bool Yielding { get; init; }
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
    /// <summary>Answers to <see cref="AbortStep"/> while recovering, by worker.</summary>
    public ImmutableDictionary<string, StepAborted> Aborted { get; init; } = ImmutableDictionary<string, StepAborted>.Empty;
    /// <summary>Workers asked to abort and not yet answered (while recovering).</summary>
    public ImmutableHashSet<string> AbortPending { get; init; } = [];
    /// <summary>The checkpoint a formation's rank 0 loads (after a coordinator restart or when no replica holds the state).</summary>
    public string? ResumeCheckpoint { get; init; }
    /// <summary>The world size recorded in the checkpoint being resumed: how many workers to wait for.</summary>
    public int ExpectedWorkers { get; init; }
    public long SkippedTotal { get; init; }
    /// <summary>Resuming: the newest valid checkpoint has been looked for (and <see cref="ResumeCheckpoint"/> set if found).</summary>
    public bool Located { get; init; }
    /// <summary>When the save in progress was asked for (to report how long it held training up).</summary>
    public DateTimeOffset SaveStartedAt { get; init; }
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

