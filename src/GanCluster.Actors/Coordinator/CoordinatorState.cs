using System.Collections.Immutable;
using System.Text.Json;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Coordinator;

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
    StepKey Step,
    ImmutableHashSet<int> Pending,
    ImmutableDictionary<int, StepReduced> Replies,
    ImmutableDictionary<int, string> FinalChecksums,
    bool FinalArtifactsSaved,
    DateTimeOffset StartedAt,
    DateTimeOffset WindowStartedAt,
    long WindowStartIteration,
    int SkippedInWindow = 0,
    int ConsecutiveSkips = 0)
{
    public int WorldSize => Ranks.Length;
    /// <summary>The run's output folder on the seed: the spec's, under <see cref="CoordinatorSettings.OutputRoot"/> when relative.</summary>
    public string Output { get; init; } = "";
    /// <summary>The current formation's name; every message of it carries this.</summary>
    public long Formation { get; init; }
    /// <summary>The last update applied on every worker (null: none yet). A new formation continues after it.</summary>
    public StepKey? Committed { get; init; }
    /// <summary>Real samples drawn by committed-or-reduced D updates, over all ranks: a new formation's data position.</summary>
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
    public long CompletedIterations => Committed is { Phase: StepPhase.Generator } c ? c.Iteration + 1 : Committed?.Iteration ?? 0;
}

/// <summary>
/// The coordinator as a pure function: <c>Handle(input) → (next state, effects)</c>. It assigns ranks and shards and walks
/// Algorithm 1 cluster-wide: every worker computes and all-reduces the same update, and only when all have reduced
/// it is committed (applied) everywhere, piggy-backed on the next update. No G update starts before the k D updates of
/// its iteration are committed on every worker; replies for any other update are rejected and logged.
/// <para>
/// Membership changes never restart the survivors. A lost worker aborts the update in flight (no replica applies a
/// partial average) and the survivors re-form a ring without it; a joining or leaving worker is taken in or let go at
/// the next iteration boundary. Every new formation gets rank 0's full state (weights, BatchNorm statistics, optimizer
/// states), so all replicas start it identical.
/// </para>
/// </summary>
public sealed record CoordinatorState(
    RunState Phase,
    ImmutableDictionary<string, WorkerInfo> Workers,
    ActiveRun? Run,
    long TimerToken,
    string? LastError,
    CoordinatorSettings Settings)
{
    public static CoordinatorState Initial(CoordinatorSettings settings) =>
        new(RunState.Idle, ImmutableDictionary<string, WorkerInfo>.Empty, null, 0, null, settings);

    public (CoordinatorState State, IReadOnlyList<Effect> Effects) Handle(CoordinatorInput input)
    {
        var fx = new List<Effect>();
        var next = input switch
        {
            CoordinatorInput.WorkerUp up => OnWorkerUp(up.Worker, up.Now, fx),
            CoordinatorInput.WorkerDown down => OnWorkerDown(down, fx),
            CoordinatorInput.Submit submit => OnSubmit(submit, fx),
            CoordinatorInput.FromWorker w => OnWorkerMessage(w.Message, w.Now, fx),
            CoordinatorInput.ArtifactsDone a => OnArtifacts(a, fx),
            CoordinatorInput.TimerFired t => OnTimer(t.Token, t.Now, fx),
            CoordinatorInput.Recover r => OnRecover(r, fx),
            CoordinatorInput.CheckpointFound c => OnCheckpointFound(c, fx),
            CoordinatorInput.Watch w => OnWatch(w.RunId, fx),
            CoordinatorInput.Cancel c => OnCancel(c, fx),
            _ => this,
        };
        return (next, fx);
    }

    /// <summary>How the last run driven by this coordinator ended (null: none has ended here).</summary>
    public RunProtocol.RunEnded? Ended { get; init; }

    /// <summary>The answer to a client's <see cref="RunProtocol.GetStatus"/>.</summary>
    public RunProtocol.StatusReported Status() =>
        new(Phase, Run?.RunId, Workers.Count, Run?.CompletedIterations ?? 0, LastError, Run?.Spec.Training.Iterations ?? 0,
            [.. Workers.Values.OrderBy(w => w.WorkerId, StringComparer.Ordinal)
                .Select(w => new RunProtocol.WorkerStatus(w.WorkerId, w.Device, Busy ? Run!.Ranks.IndexOf(w.WorkerId) : -1))]);

    public bool Busy => Phase is RunState.Starting or RunState.Running or RunState.Saving or RunState.Recovering or RunState.Resuming or RunState.Finishing
        or RunState.Cancelling;

    // ---------------------------------------------------------------- membership

    CoordinatorState OnWorkerUp(WorkerInfo w, DateTimeOffset now, List<Effect> fx)
    {
        fx.Add(new Effect.Respond(new WorkerRegistered(w.WorkerId)));
        if (Workers.TryGetValue(w.WorkerId, out var known) && known == w) return this;
        var s = this with { Workers = Workers.SetItem(w.WorkerId, w) };
        var registered = $"worker {w.WorkerId} registered ({w.Device}, data plane {w.DataHost}:{w.DataPort}); {s.Workers.Count} worker(s)";
        if (Busy && Run!.DeviceKind is { } kind && KindOf(w.Device) != kind)
            Note(fx, Run.RunId, $"{registered}; it does not join run {Run.RunId}, which trains on {kind} only", warning: true);
        else if (Busy && !Run!.Ranks.Contains(w.WorkerId) && Phase is RunState.Running or RunState.Saving)
            Note(fx, Run!.RunId, $"{registered}; it joins run {Run.RunId} at the next iteration boundary (now at {Run.Step})");
        else
            fx.Add(new Effect.Log(registered));
        if (Phase == RunState.Resuming && s.Run!.Located && s.Workers.Count >= s.Run.ExpectedWorkers)
            return s.FormAfterWait(now, fx);
        return s;
    }

    CoordinatorState OnWorkerDown(CoordinatorInput.WorkerDown down, List<Effect> fx)
    {
        if (!Workers.ContainsKey(down.WorkerId)) return this;
        var s = this with { Workers = Workers.Remove(down.WorkerId) };
        var run = Run;
        var inRun = s.Busy && run!.Ranks.Contains(down.WorkerId);
        var graceful = run is not null && run.Leaving.Contains(down.WorkerId);
        if (inRun) Note(fx, run!.RunId, $"worker {down.WorkerId} left: {down.Why}", warning: !graceful);
        else fx.Add(new Effect.Log($"worker {down.WorkerId} left: {down.Why}"));
        if (!inRun) return s;
        var rank = run!.Ranks.IndexOf(down.WorkerId);
        if (Phase == RunState.Cancelling)   // every replica is done; only rank 0's upload of the checkpoint matters
            return rank == 0 ? s.EndCancelled($"rank 0 ({down.WorkerId}) was lost before the checkpoint of iteration {run.CheckpointAt} was written", fx) : s;
        return Phase == RunState.Recovering
            ? s.AbortAnswered(down.WorkerId, null, fx)
            : s.Recover($"worker {down.WorkerId} (rank {rank}) was lost during {Phase} at {run.Step}: {down.Why}", counted: !graceful, down.Now, fx);
    }

    // ---------------------------------------------------------------- submit

    CoordinatorState OnSubmit(CoordinatorInput.Submit submit, List<Effect> fx)
    {
        if (Busy)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack($"the cluster is busy with run {Run!.RunId} ({Phase})", [])));
            return this;
        }
        RunSpec spec;
        try
        {
            spec = RunSpecValidator.Parse(submit.SpecJson, "(submitted)", checkPaths: false, Settings.MemoryLimitBytes);
        }
        catch (InvalidRunSpecException e)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack("invalid run spec", e.Errors.Select(x => x.ToString()).ToArray())));
            fx.Add(new Effect.Log($"refused a run spec: {string.Join("; ", e.Errors)}", Warning: true));
            return this;
        }
        // The seed decides where runs go: a relative folder under its runs root, whatever the spec says.
        var outputProblem = RunFolder.ClusterOutputProblem(spec.ResolvedOutput)
                            ?? (Settings.OutputRoot is { } root && RunFolder.UnderRoot(root, spec.ResolvedOutput) is null
                                ? $"must be a folder under the seed's runs root {root} (got \"{spec.ResolvedOutput}\")" : null);
        if (outputProblem is not null)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack("invalid run spec", [$"output: {outputProblem}"])));
            fx.Add(new Effect.Log($"refused a run spec: output: {outputProblem}", Warning: true));
            return this;
        }
        if (Workers.IsEmpty)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack("no workers have joined the cluster", [])));
            return this;
        }
        if (MixedDevices(Workers.Values) is { } mixed)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack(mixed, [])));
            fx.Add(new Effect.Log($"refused a run: {mixed}", Warning: true));
            return this;
        }

        // At most one sample per worker and step.
        var world = Math.Min(Workers.Count, spec.Training.BatchSize);
        var runId = $"{spec.Name}-{submit.Now:yyyyMMdd-HHmmss}";
        var run = NewRun(runId, spec, submit.SpecJson, submit.Now, Settings) with
        {
            DeviceKind = KindOf(Workers.Values.First().Device),
            Formation = submit.Formation,
            PerWorkerBatch = Math.Max(1, spec.Training.BatchSize / world),
            ExpectedWorkers = world,
        };
        var batches = BatchesFor(run, world);
        fx.Add(new Effect.Respond(new RunProtocol.SubmitAck(runId, world, run.Output)));
        fx.Add(new Effect.PersistRun(new RunRecord(runId, run.Output, submit.SpecJson)));
        fx.Add(new Effect.Log($"run {runId}: {spec.Model.Kind} on {spec.Dataset.Kind}, k={spec.Training.K}, {spec.Training.Iterations} iterations, " +
                              $"global batch {batches.Sum()} over {world} worker(s) [{string.Join(", ", batches)}], seed {spec.Training.Seed}"));
        // Like a local run, a run whose output folder holds a valid checkpoint goes on from it.
        return (this with { Phase = RunState.Resuming, Run = run, LastError = null }).FindCheckpoint(fx);
    }

    CoordinatorState OnWatch(string runId, List<Effect> fx)
    {
        if (Busy && Run!.RunId == runId)
        {
            fx.Add(new Effect.AddWatcher());
            fx.Add(new Effect.Respond(new RunProtocol.WatchAck(runId, Phase, Run.CompletedIterations)));
        }
        else if (Ended?.RunId == runId)
            fx.Add(new Effect.Respond(Ended));
        else
            fx.Add(new Effect.Respond(new RunProtocol.WatchNack(runId, Busy
                ? $"the coordinator is driving run {Run!.RunId}, not {runId}"
                : $"the coordinator does not know run {runId} (it may have ended while the coordinator moved to another seed: look at its output folder)")));
        return this;
    }

    CoordinatorState OnCancel(CoordinatorInput.Cancel c, List<Effect> fx)
    {
        string? refusal = null;
        if (!Busy)
            refusal = Ended?.RunId == c.RunId ? $"run {c.RunId} has already ended ({Ended.Outcome.ToString().ToLowerInvariant()})" : $"no run is active (the coordinator is {Phase})";
        else if (Run!.RunId != c.RunId)
            refusal = $"the coordinator is driving run {Run.RunId}, not {c.RunId}";
        else if (Phase == RunState.Finishing)
            refusal = $"run {c.RunId} has trained all its iterations and is finishing";
        if (refusal is not null)
        {
            fx.Add(new Effect.Respond(new RunProtocol.CancelNack(c.RunId, refusal)));
            return this;
        }
        var run = Run!;
        if (run.CancelledBy is not null)
        {
            fx.Add(new Effect.Respond(new RunProtocol.CancelAck(c.RunId, $"run {c.RunId} is already being cancelled (asked by {run.CancelledBy})")));
            return this;
        }
        var s = WithRun(run with { CancelledBy = c.By });
        Note(fx, run.RunId, $"run {run.RunId}: cancelled by {c.By} during {Phase} at {run.Step}");
        // Kept with the run: if this coordinator dies before the end, the next one honours the cancel.
        fx.Add(new Effect.PersistRun(new RunRecord(run.RunId, run.Output, run.SpecJson, c.By)));
        if (Phase == RunState.Resuming)
        {
            // No formation holds a newer state than the newest checkpoint: end now.
            fx.Add(new Effect.Respond(new RunProtocol.CancelAck(c.RunId, $"run {c.RunId} was resuming; it ends now and its checkpoints stay as they are")));
            return s.EndCancelled(null, fx);
        }
        fx.Add(new Effect.Respond(new RunProtocol.CancelAck(c.RunId,
            $"run {c.RunId} stops at the next iteration boundary (it is at {run.Step}) after writing a checkpoint")));
        return s;
    }

    /// <summary>
    /// A cancelled run at an iteration boundary (<paramref name="commit"/>: the G update just reduced everywhere, or null
    /// when the formation already holds the boundary). It ends on a checkpoint of this iteration: written now, or already
    /// written or being written.
    /// </summary>
    CoordinatorState HonourCancel(StepKey? commit, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var done = commit is not null ? commit.Iteration + 1 : run.CompletedIterations;
        if (done == 0) return EndCancelled(null, fx);
        if (commit is null && run.CheckpointAt == done)
            return run.CheckpointWritten ? EndCancelled(null, fx) : (this with { Phase = RunState.Cancelling }).Arm(Settings.StepTimeout, fx);
        return Save(done, checkpoint: true, commit, now, fx);
    }

    /// <summary>
    /// The end of a cancelled run: the workers drop it and nothing is resumed by a restarted coordinator. Submitting
    /// the same spec again continues from its newest checkpoint (<paramref name="problem"/>: why the last one is missing).
    /// </summary>
    CoordinatorState EndCancelled(string? problem, List<Effect> fx)
    {
        var run = Run!;
        foreach (var id in run.Ranks.Where(Workers.ContainsKey)) fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, "cancelled")));
        var s = ReleaseLeavers(fx);
        var trained = Math.Max(run.CompletedIterations, run.CheckpointWritten ? run.CheckpointAt : 0);
        var where = problem is not null
            ? $"{problem}; submit the same spec again to continue from the newest checkpoint before it"
            : run.CheckpointWritten && run.CheckpointAt > 0
                ? $"checkpoint {CheckpointStore.PathOf(run.Output, run.CheckpointAt)}; submit the same spec again to continue from it"
                : "no checkpoint was written";
        var message = $"stopped by {run.CancelledBy} after {trained} of {run.Spec.Training.Iterations} iterations; {where}" +
                      (run.Quality is null ? "" : $"; newest samples: {run.Quality}");
        fx.Add(new Effect.Log($"run {run.RunId} cancelled: {message}", Warning: problem is not null));
        var ended = new RunProtocol.RunEnded(run.RunId, RunOutcome.Cancelled, message, run.Output, null);
        fx.Add(new Effect.Publish(ended));
        fx.Add(new Effect.ForgetRun(run.RunId));
        return s with { Phase = RunState.Idle, TimerToken = TimerToken + 1, Ended = ended };
    }

    static ActiveRun NewRun(string runId, RunSpec spec, string specJson, DateTimeOffset now, CoordinatorSettings settings) =>
        new(runId, spec, specJson, [], [], GanScheduleKeys.First, [], ImmutableDictionary<int, StepReduced>.Empty,
            ImmutableDictionary<int, string>.Empty, false, now, now, 0)
        {
            // Path.GetFullPath with a base only combines and normalizes: no file system, so this stays pure.
            Output = settings.OutputRoot is { } root ? RunFolder.UnderRoot(root, spec.ResolvedOutput) ?? Path.GetFullPath(spec.ResolvedOutput, root) : spec.ResolvedOutput,
        };

    /// <summary>Global batch B over W workers: B/W each, the remainder to the lowest ranks.</summary>
    public static int[] SplitBatch(int batch, int workers) =>
        Enumerable.Range(0, workers).Select(r => batch / workers + (r < batch % workers ? 1 : 0)).ToArray();

    /// <summary>Per-worker batches for a world of <paramref name="workers"/>, by <c>training.batchMode</c>.</summary>
    public static int[] BatchesFor(ActiveRun run, int workers) =>
        run.Spec.Training.BatchMode == "per-worker"
            ? Enumerable.Repeat(run.PerWorkerBatch, workers).ToArray()
            : SplitBatch(run.Spec.Training.BatchSize, workers);

    // ---------------------------------------------------------------- forming a ring

    /// <summary>Sends every member its rank, shard and the formation's starting point; waits for all to be ready.</summary>
    CoordinatorState Form(ImmutableArray<string> ranks, ResumeFrom? resume, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var formation = resume is null ? run.Formation : run.Formation + 1;
        var batches = BatchesFor(run, ranks.Length);
        var peers = ranks.Select((id, r) => new PeerAddress(r, Workers[id].DataHost, Workers[id].DataPort)).ToArray();
        for (var r = 0; r < ranks.Length; r++)
            fx.Add(new Effect.ToWorker(ranks[r], new PrepareRun(run.RunId, run.SpecJson, r, ranks.Length, batches, formation, peers, Settings.ChecksumEvery, resume)));
        if (resume is not null)
            Note(fx, run.RunId, $"run {run.RunId}: re-forming with {ranks.Length} worker(s) [{string.Join(", ", ranks)}], batches [{string.Join(", ", batches)}], " +
                                $"after {resume.Position?.ToString() ?? "the start"}" + (resume.Checkpoint is null ? "; state from rank 0's replica" : $"; state from {resume.Checkpoint}"));
        var next = run with
        {
            Ranks = ranks,
            LocalBatches = [.. batches],
            Formation = formation,
            Pending = Enumerable.Range(0, ranks.Length).ToImmutableHashSet(),
            Replies = ImmutableDictionary<int, StepReduced>.Empty,
            Aborted = ImmutableDictionary<string, StepAborted>.Empty,
            AbortPending = [],
            Committed = resume?.Position ?? run.Committed,
        };
        return (this with { Phase = RunState.Starting, Run = next }).Arm(Settings.PrepareTimeout, fx);
    }

    /// <summary>The kind of a worker's device: <c>cpu</c> or <c>cuda</c> (<c>cuda:1</c> is a cuda).</summary>
    public static string KindOf(string device) => GanCluster.Training.Native.DeviceName.KindOf(device);

    /// <summary>
    /// Why these workers cannot train one run together (null: they can). CPU and CUDA kernels round differently (CUDA
    /// fuses Adam's multiply-adds), so replicas on both would drift apart: a checksum failure, or silent drift without checksums.
    /// </summary>
    public static string? MixedDevices(IEnumerable<WorkerInfo> workers)
    {
        var kinds = workers.GroupBy(w => KindOf(w.Device)).OrderBy(g => g.Key, StringComparer.Ordinal).ToList();
        if (kinds.Count <= 1) return null;
        var listed = string.Join(" and ", kinds.Select(g => $"{g.Key} ({string.Join(", ", g.Select(w => w.WorkerId).Order(StringComparer.Ordinal))})"));
        return $"the workers mix device kinds: {listed}. A run trains on one kind only (CPU and CUDA round the same update " +
               "differently, so replicas would drift apart); stop the workers of one kind, or start them against another cluster";
    }

    /// <summary>Workers that can take part in the run: not leaving, and on the run's kind of device.</summary>
    bool Eligible(ActiveRun run, string id) =>
        !run.Leaving.Contains(id) && (run.DeviceKind is null || KindOf(Workers[id].Device) == run.DeviceKind);

    /// <summary>Members of the next formation: holders of the current state first (rank 0 broadcasts it), then the rest.</summary>
    ImmutableArray<string> NextMembers(IEnumerable<string> stateHolders)
    {
        var run = Run!;
        var eligible = Workers.Keys.Where(id => Eligible(run, id)).ToHashSet();
        var holders = stateHolders.Where(eligible.Contains).ToList();
        var others = eligible.Except(holders).OrderBy(k => k, StringComparer.Ordinal);
        return [.. holders.Concat(others).Take(run.Spec.Training.BatchSize)];
    }

    bool MembershipChanged(ActiveRun run) =>
        run.Ranks.Any(run.Leaving.Contains) || Workers.Keys.Any(id => !run.Ranks.Contains(id) && Eligible(run, id));

    // ---------------------------------------------------------------- worker messages

    CoordinatorState OnWorkerMessage(IGanClusterMessage message, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run;
        switch (message)
        {
            case RunPrepared p when Phase == RunState.Starting && Current(p.RunId, p.Formation) && run!.Pending.Contains(p.Rank):
            {
                var pending = run.Pending.Remove(p.Rank);
                var s = WithRun(run with { Pending = pending });
                if (!pending.IsEmpty) return s;
                Note(fx, run.RunId, $"run {run.RunId}: all {run.WorldSize} worker(s) ready; training from {(run.Committed is null ? "the start" : $"after {run.Committed}")}");
                return s.Continue(now, fx);
            }
            case PrepareFailed f when Phase == RunState.Starting && Current(f.RunId, f.Formation):
                return Fail($"worker {f.WorkerId} (rank {f.Rank}) could not prepare the run: {f.Reason}", fx);

            case StepReduced r when Phase == RunState.Running && Current(r.RunId, r.Formation) && r.Step == run!.Step && run.Pending.Contains(r.Rank):
            {
                var s = WithRun(run with { Pending = run.Pending.Remove(r.Rank), Replies = run.Replies.SetItem(r.Rank, r) });
                return s.Run!.Pending.IsEmpty ? s.OnStepReduced(now, fx) : s;
            }
            case StepFailed f when Phase is RunState.Starting or RunState.Running or RunState.Saving or RunState.Finishing && Current(f.RunId, f.Formation):
                var who = f.Rank >= 0 && f.Rank < run!.WorldSize ? $"worker {run.Ranks[f.Rank]} (rank {f.Rank})" : "a worker";
                return Recover($"{who} failed {f.Step}: {f.Reason}", counted: true, now, fx);
            case StepFailed when Phase == RunState.Recovering:
                return this;   // the ring broke under the others too: already being handled

            case StepAborted a when Phase == RunState.Recovering && Current(a.RunId, a.Formation) && run!.AbortPending.Contains(a.WorkerId):
                return AbortAnswered(a.WorkerId, a, fx);

            case ArtifactsSnapshotted a when Phase == RunState.Saving && Current(a.RunId, a.Formation) && a.Iteration == run!.CompletedIterations:
            {
                var held = (now - run.SaveStartedAt).TotalMilliseconds;
                fx.Add(new Effect.Log(FormattableString.Invariant(
                    $"run {run.RunId}: outputs of iteration {a.Iteration} snapshotted; training held up {held:F0} ms (snapshot {a.StallMs:F0} ms), written in the background")));
                return (this with { Phase = RunState.Running }).Continue(now, fx);
            }

            case RunFinishedOnWorker w when Phase == RunState.Finishing && Current(w.RunId, w.Formation) && run!.Pending.Contains(w.Rank):
            {
                var s = WithRun(run with { Pending = run.Pending.Remove(w.Rank), FinalChecksums = run.FinalChecksums.SetItem(w.Rank, w.Checksum) });
                return s.TryComplete(fx);
            }

            case LeaveRun l:
            {
                if (run is null || !Busy || !run.Ranks.Contains(l.WorkerId))
                {
                    fx.Add(new Effect.Respond(new LeaveAccepted(l.WorkerId)));
                    return this;
                }
                Note(fx, run.RunId, $"worker {l.WorkerId} asked to leave run {run.RunId}; it is released at the next iteration boundary");
                return WithRun(run with { Leaving = run.Leaving.Add(l.WorkerId) });
            }
            default:
                fx.Add(new Effect.Log($"rejected {Describe(message)}: not expected in {Phase}" + (run is null ? "" : $" at {run.RunId} {run.Step}"), Warning: true));
                return this;
        }
    }

    bool Current(string runId, long formation) => Run is { } r && r.RunId == runId && r.Formation == formation;

    CoordinatorState OnStepReduced(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var step = run.Step;
        var t = run.Spec.Training;

        var checksums = run.Replies.Values.Where(r => r.Checksum is not null).Select(r => (r.Rank, r.Checksum!)).ToList();
        if (checksums.Count > 0 && checksums.Select(c => c.Item2).Distinct().Count() > 1)
            return Fail($"replicas diverged at {step}: parameter checksums " + string.Join(", ", checksums.OrderBy(c => c.Rank).Select(c => $"rank {c.Rank}={c.Item2[..12]}")), fx);

        // NaN guard: every rank holds the same average, so one verdict; the commit then skips it everywhere.
        if (run.Replies.Values.Any(r => r.NonFinite))
        {
            var consecutive = run.ConsecutiveSkips + 1;
            Note(fx, run.RunId, $"run {run.RunId}: {step} has non-finite gradients; skipped on every worker ({consecutive} in a row)", warning: true);
            if (consecutive >= t.MaxNonFiniteSkips)
                return Fail($"diverged: {consecutive} consecutive updates with non-finite gradients (last {step}); the last good checkpoint is kept", fx);
            run = run with { ConsecutiveSkips = consecutive, SkippedInWindow = run.SkippedInWindow + 1, SkippedTotal = run.SkippedTotal + 1 };
        }
        else if (run.ConsecutiveSkips > 0)
        {
            run = run with { ConsecutiveSkips = 0 };
        }
        if (step.Phase == StepPhase.Discriminator) run = run with { SamplesConsumed = run.SamplesConsumed + run.LocalBatches.Sum() };

        var stats = run.Replies.Values.Where(r => r.Stats is not null).ToList();
        if (stats.Count > 0)
        {
            double W(Func<WindowStats, double> f) => stats.Sum(r => r.Samples * f(r.Stats!)) / stats.Sum(r => r.Samples);
            var iteration = step.Iteration + 1;
            var seconds = Math.Max((now - run.WindowStartedAt).TotalSeconds, 1e-9);
            var row = new MetricsRow(iteration, W(x => x.LossD), W(x => x.LossG), W(x => x.DReal), W(x => x.DFake),
                (iteration - run.WindowStartIteration) * run.LocalBatches.Sum() / seconds, (now - run.StartedAt).TotalSeconds, run.SkippedInWindow);
            fx.Add(new Effect.AppendMetrics(row));
            fx.Add(new Effect.Publish(new RunProtocol.ProgressReported(run.RunId, row.Iteration, t.Iterations, row.LossD, row.LossG, row.DReal, row.DFake,
                row.ImagesPerSecond, row.ElapsedSeconds)));
            run = run with { WindowStartedAt = now, WindowStartIteration = iteration, SkippedInWindow = 0 };
        }
        var s = WithRun(run with { Replies = ImmutableDictionary<int, StepReduced>.Empty });

        if (step.Phase != StepPhase.Generator)
            return s.Execute(GanScheduleKeys.Next(step, t.K), commit: step, now, fx);

        // An iteration boundary: finish, save, or take workers in and out.
        var done = step.Iteration + 1;
        if (done == t.Iterations) return s.Finish(commit: step, fx);
        if (run.CancelledBy is not null) return s.HonourCancel(commit: step, now, fx);
        var sampleEvery = t.SampleEvery > 0 ? t.SampleEvery : run.Spec.Checkpoint.Every;
        var checkpoint = done % run.Spec.Checkpoint.Every == 0;
        if (checkpoint || done % sampleEvery == 0) return s.Save(done, checkpoint, commit: step, now, fx);
        if (s.MembershipChanged(run)) return s.Reform(commit: step, now, fx);
        return s.Execute(GanScheduleKeys.Next(step, t.K), commit: step, now, fx);
    }

    /// <summary>After a formation is ready or a save is snapshotted: the next update, a re-form, or the end.</summary>
    CoordinatorState Continue(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var t = run.Spec.Training;
        if (run.CompletedIterations >= t.Iterations) return Finish(commit: null, fx);
        if (run.CancelledBy is not null && run.Committed is null or { Phase: StepPhase.Generator }) return HonourCancel(commit: null, now, fx);
        if (run.Committed is { Phase: StepPhase.Generator } && MembershipChanged(run)) return Reform(commit: null, now, fx);
        var next = run.Committed is null ? GanScheduleKeys.First : GanScheduleKeys.Next(run.Committed, t.K);
        return Execute(next, commit: null, now, fx);
    }

    /// <summary>A re-form at an iteration boundary (a join or a graceful leave): every member holds the same state.</summary>
    CoordinatorState Reform(StepKey? commit, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        if (commit is not null) fx.Add(new Effect.Committed(commit, AllRanks(run)));
        var position = commit ?? run.Committed;
        var s = ReleaseLeavers(fx);
        var members = s.NextMembers(run.Ranks);
        if (members.IsEmpty) return s.WaitForWorkers(now, fx);
        return s.Form(members, new ResumeFrom(position, ApplyPosition: commit is not null, run.SamplesConsumed, Checkpoint: null), now, fx);
    }

    /// <summary>Lets leaving workers go: they are no longer part of the run, so their departure is not a failure.</summary>
    CoordinatorState ReleaseLeavers(List<Effect> fx)
    {
        var run = Run!;
        foreach (var id in run.Leaving)
        {
            fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, "left the run")));
            fx.Add(new Effect.ToWorker(id, new LeaveAccepted(id)));
            Note(fx, run.RunId, $"worker {id} released from run {run.RunId}");
        }
        return this with { Workers = Workers.RemoveRange(run.Leaving), Run = run with { Leaving = [] } };
    }

    CoordinatorState Save(long done, bool checkpoint, StepKey? commit, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        if (commit is not null) fx.Add(new Effect.Committed(commit, AllRanks(run)));
        run = run with { Committed = commit ?? run.Committed, SaveStartedAt = now };
        if (checkpoint) run = run with { CheckpointAt = done, CheckpointWritten = false };
        var json = CheckpointJson(run);
        foreach (var id in run.Ranks)
            fx.Add(new Effect.ToWorker(id, new SaveArtifacts(run.RunId, run.Formation, done, checkpoint, commit, json)));
        return (this with { Phase = RunState.Saving, Run = run }).Arm(Settings.StepTimeout, fx);
    }

    CoordinatorState Finish(StepKey? commit, List<Effect> fx)
    {
        var run = Run!;
        if (commit is not null) fx.Add(new Effect.Committed(commit, AllRanks(run)));
        run = run with { Committed = commit ?? run.Committed, FinalChecksums = ImmutableDictionary<int, string>.Empty, Pending = AllRanks(run).ToImmutableHashSet() };
        var json = CheckpointJson(run);
        foreach (var id in run.Ranks)
            fx.Add(new Effect.ToWorker(id, new FinishRun(run.RunId, run.Formation, commit, run.Output, json)));
        fx.Add(new Effect.Log($"run {run.RunId}: {run.Spec.Training.Iterations} iterations done; finishing"));
        return (this with { Phase = RunState.Finishing, Run = run }).Arm(Settings.StepTimeout, fx);
    }

    static string CheckpointJson(ActiveRun run) =>
        new CoordinatorCheckpoint(run.RunId, run.CompletedIterations, run.SamplesConsumed, run.WorldSize, run.PerWorkerBatch,
            [.. run.Failures], run.SkippedTotal).ToJson();

    // ---------------------------------------------------------------- failures

    /// <summary>
    /// A worker was lost or a step failed: abort the update in flight on every remaining worker (nobody applies it), then
    /// re-form without the lost ones and go on from the last committed update. Counted against the retry budget.
    /// </summary>
    CoordinatorState Recover(string reason, bool counted, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        if (Phase == RunState.Resuming) return this;
        if (counted)
        {
            var failures = run.Failures.Add(now).RemoveAll(f => f < now - TimeSpan.FromHours(1));
            run = run with { Failures = failures };
            if (failures.Count > run.Spec.Training.MaxFailuresPerHour)
                return WithRun(run).Fail($"{reason}; the retry budget is spent ({failures.Count} failures within an hour, training.maxFailuresPerHour = " +
                                         $"{run.Spec.Training.MaxFailuresPerHour})", fx);
        }
        if (Phase == RunState.Finishing && run.FinalChecksums.Count > 0 && run.Pending.Count == 0)
            return WithRun(run);   // the end is only waiting for the final files
        Note(fx, run.RunId, $"run {run.RunId}: {reason}; aborting {run.Step} everywhere and re-forming from {(run.Committed?.ToString() ?? "the start")}",
            warning: true);
        var formation = run.Formation + 1;
        var ask = run.Ranks.Where(Workers.ContainsKey).ToImmutableHashSet();
        foreach (var id in ask) fx.Add(new Effect.ToWorker(id, new AbortStep(run.RunId, formation)));
        var s = this with
        {
            Phase = RunState.Recovering,
            Run = run with { Formation = formation, AbortPending = ask, Aborted = ImmutableDictionary<string, StepAborted>.Empty, Pending = [] },
        };
        return ask.IsEmpty ? s.FinishRecovery(now, fx) : s.Arm(Settings.StepTimeout, fx);
    }

    CoordinatorState AbortAnswered(string workerId, StepAborted? answer, List<Effect> fx)
    {
        var run = Run!;
        var s = WithRun(run with
        {
            AbortPending = run.AbortPending.Remove(workerId),
            Aborted = answer is null ? run.Aborted : run.Aborted.SetItem(workerId, answer),
        });
        return s.Run!.AbortPending.IsEmpty ? s.FinishRecovery(DateTimeOffset.MinValue, fx) : s;
    }

    CoordinatorState FinishRecovery(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        // Workers that did not answer are dropped; if they are alive, their next registration makes them joiners.
        var silent = run.AbortPending;
        foreach (var id in silent) Note(fx, run.RunId, $"worker {id} did not answer the abort within {Settings.StepTimeout.TotalSeconds:F0} s; dropped", warning: true);
        var s = this with { Workers = Workers.RemoveRange(silent) };
        s = s.ReleaseLeavers(fx);
        run = s.Run!;
        // Rank 0 must hold exactly the last committed update: it gives its state to all the others.
        var holders = run.Ranks.Where(id => run.Aborted.TryGetValue(id, out var a) && a.HasReplica && a.LastApplied == run.Committed).ToList();
        var members = s.NextMembers(holders);
        if (members.IsEmpty) return s.WaitForWorkers(now, fx);
        if (holders.Count == 0 && run.Committed is not null)
        {
            Note(fx, run.RunId, $"run {run.RunId}: no surviving replica holds {run.Committed}; resuming from the newest checkpoint", warning: true);
            return (s with { Phase = RunState.Resuming, Run = run with { ExpectedWorkers = members.Length } }).FindCheckpoint(fx);
        }
        return s.Form(members, new ResumeFrom(run.Committed, ApplyPosition: false, run.SamplesConsumed, Checkpoint: null), now, fx);
    }

    /// <summary>No worker is left: the state in memory is gone, so the run goes on from its newest checkpoint once workers come.</summary>
    CoordinatorState WaitForWorkers(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        Note(fx, run.RunId, $"run {run.RunId}: no workers left; it resumes from the newest checkpoint when workers join", warning: true);
        return (this with { Phase = RunState.Resuming, Run = run with { ExpectedWorkers = 1 } }).FindCheckpoint(fx);
    }

    CoordinatorState FindCheckpoint(List<Effect> fx)
    {
        fx.Add(new Effect.FindCheckpoint(Run!.Output));
        return this with { TimerToken = TimerToken + 1, Run = Run with { Located = false } };
    }

    // ---------------------------------------------------------------- a restarted coordinator

    CoordinatorState OnRecover(CoordinatorInput.Recover r, List<Effect> fx)
    {
        if (Busy) return this;
        RunSpec spec;
        try
        {
            spec = RunSpecValidator.Parse(r.Record.SpecJson, $"run {r.Record.RunId}", checkPaths: false);
        }
        catch (InvalidRunSpecException e)
        {
            fx.Add(new Effect.Log($"run {r.Record.RunId} cannot be resumed: its spec is invalid ({string.Join("; ", e.Errors)})", Warning: true));
            fx.Add(new Effect.ForgetRun(r.Record.RunId));
            return this;
        }
        fx.Add(new Effect.Log(r.Record.CancelledBy is null
            ? $"run {r.Record.RunId} was not finished when the coordinator stopped; resuming it from its newest valid checkpoint"
            : $"run {r.Record.RunId} was being cancelled by {r.Record.CancelledBy} when the coordinator stopped; ending it on its newest valid checkpoint"));
        var run = NewRun(r.Record.RunId, spec, r.Record.SpecJson, r.Now, Settings) with { Formation = r.Formation, ExpectedWorkers = 1, CancelledBy = r.Record.CancelledBy };
        return (this with { Phase = RunState.Resuming, Run = run, LastError = null }).FindCheckpoint(fx);
    }

    CoordinatorState OnCheckpointFound(CoordinatorInput.CheckpointFound c, List<Effect> fx)
    {
        if (Phase != RunState.Resuming) return this;
        var run = Run!;
        // The search runs off the coordinator's thread: an answer for another run's folder, or a second one, is stale.
        if (run.Located || (c.Output is not null && c.Output != run.Output)) return this;
        // Never train from iteration 0 over a folder whose checkpoints could not be read: it would prune them.
        if (c.Error is not null) return Fail($"could not look for checkpoints under {run.Output}: {c.Error}", fx);
        foreach (var skipped in c.Skipped) Note(fx, run.RunId, $"skipping checkpoint {skipped}; using an older one", warning: true);
        if (run.CancelledBy is not null)   // cancelled while recovering: nothing newer than this checkpoint is left
            return WithRun(run with { CheckpointAt = c.State?.Iteration ?? -1, CheckpointWritten = c.Path is not null && c.State is not null }).EndCancelled(null, fx);
        ActiveRun next;
        long resumeAt;
        if (c.Path is null || c.State is null)
        {
            Note(fx, run.RunId, $"run {run.RunId}: no checkpoint under {run.Output}; training from iteration 0");
            next = run with { Committed = null, SamplesConsumed = 0, ResumeCheckpoint = null };
            resumeAt = 0;
        }
        else
        {
            var st = c.State;
            Note(fx, run.RunId, $"run {run.RunId}: resuming from {c.Path} (iteration {st.Iteration}); waiting for {st.WorldSize} worker(s), at most {Settings.ResumeGrace.TotalSeconds:F0} s");
            next = run with
            {
                Committed = st.Iteration == 0 ? null : new StepKey(st.Iteration - 1, StepPhase.Generator, 0),
                SamplesConsumed = st.SamplesConsumed,
                PerWorkerBatch = st.PerWorkerBatch,
                Failures = [.. st.Failures],
                SkippedTotal = st.SkippedTotal,
                ResumeCheckpoint = c.Path,
                ExpectedWorkers = Math.Max(1, st.WorldSize),
                WindowStartIteration = st.Iteration,
                CheckpointAt = st.Iteration,
                CheckpointWritten = true,
            };
            resumeAt = st.Iteration;
        }
        fx.Add(new Effect.StartOutput(run.RunId, run.Output, run.SpecJson, resumeAt));
        var s = WithRun(next with { Ranks = [], Pending = [], Located = true });
        if (s.Workers.Count >= next.ExpectedWorkers) return s.FormAfterWait(DateTimeOffset.MinValue, fx);
        return s.Arm(Settings.ResumeGrace, fx);
    }

    /// <summary>Resuming: form with the registered workers; rank 0 loads the checkpoint (or a fresh start without one).</summary>
    CoordinatorState FormAfterWait(DateTimeOffset now, List<Effect> fx)
    {
        if (!Run!.Leaving.IsEmpty) return ReleaseLeavers(fx).FormAfterWait(now, fx);
        var run = Run!;
        if (run.DeviceKind is null && !Workers.IsEmpty)
        {
            // A run taken over from a record: its kind is that of the workers that are here, which must agree.
            if (MixedDevices(Workers.Values) is { } mixed) return Fail($"cannot resume: {mixed}", fx);
            return WithRun(run with { DeviceKind = KindOf(Workers.Values.First().Device) }).FormAfterWait(now, fx);
        }
        var members = NextMembers([]);
        if (members.IsEmpty)
        {
            fx.Add(new Effect.Log($"run {run.RunId}: waiting for workers to resume"));
            return Arm(Settings.ResumeGrace, fx);
        }
        if (run.Spec.Training.BatchMode == "per-worker" && run.PerWorkerBatch <= 0)
            run = run with { PerWorkerBatch = Math.Max(1, run.Spec.Training.BatchSize / members.Length) };
        var s = WithRun(run);   // Form names the new formation
        if (run.ResumeCheckpoint is null && run.Committed is null)
            return s.Form(members, resume: null, now, fx);
        return s.Form(members, new ResumeFrom(run.Committed, ApplyPosition: false, run.SamplesConsumed, run.ResumeCheckpoint), now, fx);
    }

    // ---------------------------------------------------------------- outputs and the end

    CoordinatorState OnArtifacts(CoordinatorInput.ArtifactsDone a, List<Effect> fx)
    {
        var run = Run;
        if (run is null) return this;
        if (run.RunId != a.RunId)
        {
            // A late outcome of an earlier run (a slow upload failing, a full disk) must never touch this one.
            fx.Add(new Effect.Log($"ignored the outcome of saving iteration {a.Iteration} of run {a.RunId} (driving run {run.RunId}){(a.Error is null ? "" : $": {a.Error}")}", Warning: true));
            return this;
        }
        if (a.Error is not null)
            return Busy ? Fail(a.Iteration < 0 ? $"opening the run's outputs failed: {a.Error}" : $"saving the outputs of iteration {a.Iteration} failed: {a.Error}", fx) : this;
        Note(fx, run.RunId, $"run {run.RunId}: outputs of iteration {a.Iteration} written under {run.Output}" + (a.Quality is null ? "" : $"; samples: {a.Quality}"));
        var isCheckpoint = a.Iteration == run.CheckpointAt;
        var s = WithRun(run with { Quality = a.Quality ?? run.Quality, CheckpointWritten = run.CheckpointWritten || isCheckpoint });
        if (Phase == RunState.Cancelling && isCheckpoint) return s.EndCancelled(null, fx);
        if (Phase == RunState.Finishing && a.Iteration == run.Spec.Training.Iterations)
            return s.WithRun(s.Run! with { FinalArtifactsSaved = true }).TryComplete(fx);
        return s;
    }

    CoordinatorState TryComplete(List<Effect> fx)
    {
        var run = Run!;
        if (!run.Pending.IsEmpty || !run.FinalArtifactsSaved) return this;
        var distinct = run.FinalChecksums.Values.Distinct().ToList();
        if (distinct.Count != 1)
            return Fail("replicas diverged at the end: final checksums " + string.Join(", ", run.FinalChecksums.OrderBy(c => c.Key).Select(c => $"rank {c.Key}={c.Value[..12]}")), fx);
        foreach (var id in run.Ranks.Where(Workers.ContainsKey)) fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, "completed")));
        var s = ReleaseLeavers(fx);
        var failures = run.Failures.Count == 0 ? "" : $"; {run.Failures.Count} worker failure(s) recovered";
        var samples = run.Quality is null ? "" : $"; final samples: {run.Quality}";
        var message = $"{run.Spec.Training.Iterations} iterations on {run.WorldSize} worker(s); final parameter checksum {distinct[0]}{failures}{samples}";
        fx.Add(new Effect.Log($"run {run.RunId} completed: {message}"));
        var ended = new RunProtocol.RunEnded(run.RunId, RunOutcome.Completed, message, run.Output, distinct[0]);
        fx.Add(new Effect.Publish(ended));
        fx.Add(new Effect.ForgetRun(run.RunId));
        return s with { Phase = RunState.Idle, TimerToken = TimerToken + 1, Ended = ended };
    }

    CoordinatorState OnTimer(long token, DateTimeOffset now, List<Effect> fx)
    {
        if (token != TimerToken || !Busy) return this;
        var run = Run!;
        var missing = string.Join(", ", run.Pending.OrderBy(r => r).Where(r => r < run.WorldSize).Select(r => $"{run.Ranks[r]} (rank {r})"));
        var limit = Settings.StepTimeout.TotalSeconds;
        switch (Phase)
        {
            case RunState.Starting:
                return Recover($"worker(s) {missing} did not get ready within {Settings.PrepareTimeout.TotalSeconds:F0} s", counted: true, now, fx);
            case RunState.Saving:
                return Recover($"saving the outputs after {run.Committed} did not finish within {limit:F0} s", counted: true, now, fx);
            case RunState.Recovering:
                return FinishRecovery(now, fx);
            case RunState.Resuming:
                return FormAfterWait(now, fx);
            case RunState.Cancelling:
                return Fail($"the checkpoint of iteration {run.CheckpointAt} that the cancelled run ends on was not written within {limit:F0} s", fx);
            case RunState.Finishing when run.Pending.IsEmpty:
                return Fail($"the final outputs were not saved within {limit:F0} s", fx);
            case RunState.Finishing:
                return Recover($"worker(s) {missing} did not finish within {limit:F0} s", counted: true, now, fx);
            default:
                return Recover($"worker(s) {missing} did not complete {run.Step} within {limit:F0} s", counted: true, now, fx);
        }
    }

    /// <summary>Send one update to every worker, committing the previous one.</summary>
    CoordinatorState Execute(StepKey step, StepKey? commit, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var t = run.Spec.Training;
        var isLastOfIteration = step.Phase == StepPhase.Generator;
        var done = step.Iteration + 1;
        var reportStats = isLastOfIteration && (done % t.LogEvery == 0 || done == t.Iterations);
        var reportChecksum = Settings.ChecksumEvery > 0 && step.Phase == StepPhase.Discriminator && step.SubStep == 0
                             && step.Iteration > 0 && step.Iteration % Settings.ChecksumEvery == 0;
        if (commit is not null) fx.Add(new Effect.Committed(commit, AllRanks(run)));
        foreach (var id in run.Ranks)
            fx.Add(new Effect.ToWorker(id, new ExecuteStep(run.RunId, run.Formation, step, commit, reportStats, reportChecksum)));
        var started = run.StartedAt;
        var window = run.WindowStartedAt;
        if (step == GanScheduleKeys.First && now != DateTimeOffset.MinValue) (started, window) = (now, now);
        var s = this with
        {
            Phase = RunState.Running,
            Run = run with
            {
                Step = step, Pending = AllRanks(run).ToImmutableHashSet(), StartedAt = started, WindowStartedAt = window,
                Committed = commit ?? run.Committed,
            },
        };
        return s.Arm(Settings.StepTimeout, fx);
    }

    CoordinatorState Fail(string reason, List<Effect> fx)
    {
        var run = Run;
        fx.Add(new Effect.Log($"run {run?.RunId} failed: {reason}", Warning: true));
        var ended = Ended;
        if (run is not null)
        {
            foreach (var id in run.Ranks.Where(Workers.ContainsKey)) fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, reason)));
            foreach (var id in run.Leaving) fx.Add(new Effect.ToWorker(id, new LeaveAccepted(id)));
            ended = new RunProtocol.RunEnded(run.RunId, RunOutcome.Failed, reason, run.Output, null);
            fx.Add(new Effect.Publish(ended));
            fx.Add(new Effect.ForgetRun(run.RunId));
        }
        return this with { Phase = RunState.Failed, LastError = reason, TimerToken = TimerToken + 1, Ended = ended };
    }

    CoordinatorState Arm(TimeSpan delay, List<Effect> fx)
    {
        var token = TimerToken + 1;
        fx.Add(new Effect.Schedule(token, delay));
        return this with { TimerToken = token };
    }

    CoordinatorState WithRun(ActiveRun run) => this with { Run = run };

    /// <summary>
    /// A log entry that the clients following the run also get (<c>submit --wait</c> prints it); they already know the
    /// run, so a leading "run {id}: " of the log line is left out of theirs.
    /// </summary>
    static void Note(List<Effect> fx, string runId, string text, bool warning = false)
    {
        fx.Add(new Effect.Log(text, warning));
        var prefix = $"run {runId}: ";
        fx.Add(new Effect.Publish(new RunProtocol.RunNoted(runId, text.StartsWith(prefix, StringComparison.Ordinal) ? text[prefix.Length..] : text, warning)));
    }

    static int[] AllRanks(ActiveRun run) => Enumerable.Range(0, run.WorldSize).ToArray();

    static string Describe(IGanClusterMessage m) => m switch
    {
        StepReduced r => $"StepReduced {r.RunId} {r.Step} from rank {r.Rank}",
        StepFailed f => $"StepFailed {f.RunId} {f.Step} from rank {f.Rank}",
        RunPrepared p => $"RunPrepared {p.RunId} from rank {p.Rank}",
        RunFinishedOnWorker w => $"RunFinishedOnWorker {w.RunId} from rank {w.Rank}",
        StepAborted a => $"StepAborted {a.RunId} from {a.WorkerId}",
        _ => m.GetType().Name,
    };
}

/// <summary><see cref="GanSchedule"/> on the protocol's step keys.</summary>
public static class GanScheduleKeys
{
    public static StepKey First => ToKey(GanSchedule.First);
    public static StepKey Next(StepKey step, int k) => ToKey(GanSchedule.Next(ToId(step), k));
    public static StepKey ToKey(StepId id) => new(id.Iteration, id.Phase == Training.Core.Phase.Discriminator ? StepPhase.Discriminator : StepPhase.Generator, id.SubStep);
    public static StepId ToId(StepKey key) => new(key.Iteration, key.Phase == StepPhase.Discriminator ? Training.Core.Phase.Discriminator : Training.Core.Phase.Generator, key.SubStep);
}
