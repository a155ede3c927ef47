using System.Collections.Immutable;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Engine.Coordinator;

/// <summary>
/// The coordinator as a pure function: <c>Handle(input) → (next state, effects)</c>. It assigns ranks and shards and keeps
/// the boundaries of Algorithm 1 cluster-wide: workers train a segment (up to the next log line, save or the end) on
/// their own, applying each update as soon as its all-reduce completes, and the coordinator takes over between
/// segments: metrics, saves, membership, failures, cancel. Replies for anything else are rejected and logged.
/// <para>
/// Membership changes never restart the survivors. A lost worker aborts the update in flight (no replica applies a
/// partial average) and the survivors re-form a ring without it; a joining or leaving worker is taken in or let go at
/// the next iteration boundary. Every new formation gets rank 0's full state (weights, BatchNorm statistics, optimizer
/// states), so all replicas start it identical.
/// </para>
/// </summary>
public sealed partial record CoordinatorState(
    Stage Stage,
    ImmutableDictionary<string, WorkerInfo> Workers,
    ActiveRun? Run,
    long TimerToken,
    string? LastError,
    CoordinatorSettings Settings)
{
    public static CoordinatorState Initial(CoordinatorSettings settings) =>
        new(new Stage.Idle(), ImmutableDictionary<string, WorkerInfo>.Empty, null, 0, null, settings);

    /// <summary>The phase, as clients see it.</summary>
    public RunState Phase => Stage.State;

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
        {
            Note(fx, Run!.RunId, $"{registered}; it joins run {Run.RunId} at the next iteration boundary (now after {Run.Committed?.ToString() ?? "the start"})");
            return s.YieldSegment(fx);
        }
        else
            fx.Add(new Effect.Log(registered));
        if (Stage is Stage.Resuming { Located: true } r && s.Workers.Count >= r.ExpectedWorkers)
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
            : s.Recover($"worker {down.WorkerId} (rank {rank}) was lost during {Phase} after {run.Committed?.ToString() ?? "the start"}: {down.Why}", counted: !graceful, down.Now, fx);
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
        };
        var batches = BatchesFor(run, world);
        fx.Add(new Effect.Respond(new RunProtocol.SubmitAck(runId, world, run.Output)));
        fx.Add(new Effect.PersistRun(new RunRecord(runId, run.Output, submit.SpecJson)));
        fx.Add(new Effect.Log($"run {runId}: {spec.Model.Kind} on {spec.Dataset.Kind}, k={spec.Training.K}, {spec.Training.Iterations} iterations, " +
                              $"global batch {batches.Sum()} over {world} worker(s) [{string.Join(", ", batches)}], seed {spec.Training.Seed}"));
        // Like a local run, a run whose output folder holds a valid checkpoint goes on from it.
        return (this with { Run = run, LastError = null }).FindCheckpoint(world, fx);
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
        Note(fx, run.RunId, $"run {run.RunId}: cancelled by {c.By} during {Phase} after {run.Committed?.ToString() ?? "the start"}");
        // Kept with the run: if this coordinator dies before the end, the next one honours the cancel.
        fx.Add(new Effect.PersistRun(new RunRecord(run.RunId, run.Output, run.SpecJson, c.By)));
        if (Phase == RunState.Resuming)
        {
            // No formation holds a newer state than the newest checkpoint: end now.
            fx.Add(new Effect.Respond(new RunProtocol.CancelAck(c.RunId, $"run {c.RunId} was resuming; it ends now and its checkpoints stay as they are")));
            return s.EndCancelled(null, fx);
        }
        fx.Add(new Effect.Respond(new RunProtocol.CancelAck(c.RunId,
            $"run {c.RunId} stops at the next iteration boundary (it was after {run.Committed?.ToString() ?? "the start"}) after writing a checkpoint")));
        return s.YieldSegment(fx);
    }

    /// <summary>
    /// A cancelled run at an iteration boundary. It ends on a checkpoint of this iteration: written now, or already
    /// written or being written.
    /// </summary>
    CoordinatorState HonourCancel(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var done = run.CompletedIterations;
        if (done == 0) return EndCancelled(null, fx);
        if (run.CheckpointAt == done)
            return run.CheckpointWritten ? EndCancelled(null, fx) : (this with { Stage = new Stage.Cancelling() }).Arm(Settings.StepTimeout, fx);
        return Save(done, checkpoint: true, now, fx);
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
        return s with { Stage = new Stage.Idle(), TimerToken = TimerToken + 1, Ended = ended };
    }

    static ActiveRun NewRun(string runId, RunSpec spec, string specJson, DateTimeOffset now, CoordinatorSettings settings) =>
        new(runId, spec, specJson, [], [], now, now, 0)
        {
            // Path.GetFullPath with a base only combines and normalizes: no file system, so this stays pure.
            Output = settings.OutputRoot is { } root ? RunFolder.UnderRoot(root, spec.ResolvedOutput) ?? Path.GetFullPath(spec.ResolvedOutput, root) : spec.ResolvedOutput,
        };

    /// <summary>Per-worker batches for a world of <paramref name="workers"/>, by <c>training.batchMode</c>.</summary>
    public static int[] BatchesFor(ActiveRun run, int workers) => BatchSplit.For(run.Spec.Training, run.PerWorkerBatch, workers);

    // ---------------------------------------------------------------- forming a ring

    /// <summary>Sends every member its rank, shard and the formation's starting point; waits for all to be ready.</summary>
    CoordinatorState Form(ImmutableArray<string> ranks, ResumeFrom? resume, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var formation = resume is null ? run.Formation : run.Formation + 1;
        var batches = BatchesFor(run, ranks.Length);
        var peers = ranks.Select((id, r) => new PeerAddress(r, Workers[id].DataHost, Workers[id].DataPort)).ToArray();
        for (var r = 0; r < ranks.Length; r++)
            fx.Add(new Effect.ToWorker(ranks[r], new PrepareRun(run.RunId, run.SpecJson, r, ranks.Length, batches, formation, peers, resume)));
        if (resume is not null)
            Note(fx, run.RunId, $"run {run.RunId}: re-forming with {ranks.Length} worker(s) [{string.Join(", ", ranks)}], batches [{string.Join(", ", batches)}], " +
                                $"after {resume.Position?.ToString() ?? "the start"}" + (resume.Checkpoint is null ? "; state from rank 0's replica" : $"; state from {resume.Checkpoint}"));
        var next = run with
        {
            Ranks = ranks,
            LocalBatches = [.. batches],
            Formation = formation,
            Committed = resume?.Position ?? run.Committed,
        };
        return (this with { Stage = new Stage.Starting([.. Enumerable.Range(0, ranks.Length)]), Run = next }).Arm(Settings.PrepareTimeout, fx);
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
        if (Stage is Stage.Cancelling && isCheckpoint) return s.EndCancelled(null, fx);
        if (Stage is Stage.Finishing f && a.Iteration == run.Spec.Training.Iterations)
            return (s with { Stage = f with { ArtifactsSaved = true } }).TryComplete(fx);
        return s;
    }

    CoordinatorState TryComplete(List<Effect> fx)
    {
        var run = Run!;
        if (Stage is not Stage.Finishing { Pending.IsEmpty: true, ArtifactsSaved: true } finishing) return this;
        var distinct = finishing.Checksums.Values.Distinct().ToList();
        if (distinct.Count != 1)
            return Fail("replicas diverged at the end: final checksums " + string.Join(", ", finishing.Checksums.OrderBy(c => c.Key).Select(c => $"rank {c.Key}={c.Value[..12]}")), fx);
        foreach (var id in run.Ranks.Where(Workers.ContainsKey)) fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, "completed")));
        var s = ReleaseLeavers(fx);
        var failures = run.Failures.Count == 0 ? "" : $"; {run.Failures.Count} worker failure(s) recovered";
        var samples = run.Quality is null ? "" : $"; final samples: {run.Quality}";
        var message = $"{run.Spec.Training.Iterations} iterations on {run.WorldSize} worker(s); final parameter checksum {distinct[0]}{failures}{samples}";
        fx.Add(new Effect.Log($"run {run.RunId} completed: {message}"));
        var ended = new RunProtocol.RunEnded(run.RunId, RunOutcome.Completed, message, run.Output, distinct[0]);
        fx.Add(new Effect.Publish(ended));
        fx.Add(new Effect.ForgetRun(run.RunId));
        return s with { Stage = new Stage.Idle(), TimerToken = TimerToken + 1, Ended = ended };
    }

    CoordinatorState OnTimer(long token, DateTimeOffset now, List<Effect> fx)
    {
        if (token != TimerToken || !Busy) return this;
        var run = Run!;
        var pending = Stage switch
        {
            Stage.Starting st => st.Pending,
            Stage.Running r => r.Pending,
            Stage.Finishing f => f.Pending,
            _ => [],
        };
        var missing = string.Join(", ", pending.OrderBy(r => r).Where(r => r < run.WorldSize).Select(r => $"{run.Ranks[r]} (rank {r})"));
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
            case RunState.Finishing when pending.IsEmpty:
                return Fail($"the final outputs were not saved within {limit:F0} s", fx);
            case RunState.Finishing:
                return Recover($"worker(s) {missing} did not finish within {limit:F0} s", counted: true, now, fx);
            default:
                return Recover($"worker(s) {missing} made no progress after {run.Committed?.ToString() ?? "the start"} within {limit:F0} s (segment to iteration {(Stage as Stage.Running)?.Until})", counted: true, now, fx);
        }
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
        return this with { Stage = new Stage.Failed(), LastError = reason, TimerToken = TimerToken + 1, Ended = ended };
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
        SegmentDone d => $"SegmentDone {d.RunId} after {d.Last} from rank {d.Rank}",
        StepFailed f => $"StepFailed {f.RunId} {f.Step} from rank {f.Rank}",
        RunPrepared p => $"RunPrepared {p.RunId} from rank {p.Rank}",
        RunFinishedOnWorker w => $"RunFinishedOnWorker {w.RunId} from rank {w.Rank}",
        StepAborted a => $"StepAborted {a.RunId} from {a.WorkerId}",
        _ => m.GetType().Name,
    };
}
