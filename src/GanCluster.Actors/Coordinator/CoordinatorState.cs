using System.Collections.Immutable;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Training;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Coordinator;

/// <summary>The coordinator's explicit states (after Ray Train's controller).</summary>
public enum RunPhase { Idle, Starting, Running, Saving, Finishing, Failed }

public sealed record WorkerInfo(string WorkerId, string Device, string DataHost, int DataPort);

/// <summary>Limits the coordinator enforces; typed options on the seed.</summary>
public sealed record CoordinatorSettings(TimeSpan PrepareTimeout, TimeSpan StepTimeout, int ChecksumEvery);

/// <summary>Inputs: everything that can happen to the coordinator. <c>Now</c> comes from outside to keep Handle pure.</summary>
public abstract record CoordinatorInput
{
    public sealed record WorkerUp(WorkerInfo Worker) : CoordinatorInput;
    public sealed record WorkerDown(string WorkerId, string Why) : CoordinatorInput;
    public sealed record Submit(string SpecJson, long Session, DateTimeOffset Now) : CoordinatorInput;
    public sealed record FromWorker(IGanClusterMessage Message, DateTimeOffset Now) : CoordinatorInput;
    public sealed record ArtifactsDone(long Iteration, string? Error) : CoordinatorInput;
    /// <summary>A timer set by <see cref="Effect.Schedule"/> fired; ignored unless it is still the current one.</summary>
    public sealed record TimerFired(long Token) : CoordinatorInput;
}

/// <summary>What the actor must do for a decision.</summary>
public abstract record Effect
{
    public sealed record ToWorker(string WorkerId, IGanClusterMessage Message) : Effect;
    /// <summary>Reply to whoever sent the input being handled.</summary>
    public sealed record Respond(IGanClusterMessage Message) : Effect;
    /// <summary>To the clients watching the run.</summary>
    public sealed record Publish(IGanClusterMessage Message) : Effect;
    public sealed record Schedule(long Token, TimeSpan Delay) : Effect;
    public sealed record StartOutput(string RunId, string Output, string SpecJson) : Effect;
    public sealed record AppendMetrics(MetricsRow Row) : Effect;
    /// <summary>An entry of the coordinator's event log.</summary>
    public sealed record Log(string Text, bool Warning = false) : Effect;
    /// <summary>The update was committed (applied) on these ranks.</summary>
    public sealed record Committed(StepKey Step, int[] Ranks) : Effect;
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
    public string Output => Spec.ResolvedOutput;
}

/// <summary>
/// The coordinator as a pure function: <c>Handle(input) → (next state, effects)</c>. It assigns ranks and shards and walks
/// Algorithm 1 cluster-wide: every worker computes and all-reduces the same update, and only when all have reduced
/// it is committed (applied) everywhere, piggy-backed on the next update. No G update starts before the k D updates of
/// its iteration are committed on every worker; replies for any other update are rejected and logged.
/// </summary>
public sealed record CoordinatorState(
    RunPhase Phase,
    ImmutableDictionary<string, WorkerInfo> Workers,
    ActiveRun? Run,
    long TimerToken,
    string? LastError,
    CoordinatorSettings Settings)
{
    public static CoordinatorState Initial(CoordinatorSettings settings) =>
        new(RunPhase.Idle, ImmutableDictionary<string, WorkerInfo>.Empty, null, 0, null, settings);

    public (CoordinatorState State, IReadOnlyList<Effect> Effects) Handle(CoordinatorInput input)
    {
        var fx = new List<Effect>();
        var next = input switch
        {
            CoordinatorInput.WorkerUp up => OnWorkerUp(up.Worker, fx),
            CoordinatorInput.WorkerDown down => OnWorkerDown(down, fx),
            CoordinatorInput.Submit submit => OnSubmit(submit, fx),
            CoordinatorInput.FromWorker w => OnWorkerMessage(w.Message, w.Now, fx),
            CoordinatorInput.ArtifactsDone a => OnArtifacts(a, fx),
            CoordinatorInput.TimerFired t => OnTimer(t.Token, fx),
            _ => this,
        };
        return (next, fx);
    }

    public bool Busy => Phase is RunPhase.Starting or RunPhase.Running or RunPhase.Saving or RunPhase.Finishing;

    CoordinatorState OnWorkerUp(WorkerInfo w, List<Effect> fx)
    {
        fx.Add(new Effect.Respond(new WorkerRegistered(w.WorkerId)));
        if (Workers.TryGetValue(w.WorkerId, out var known) && known == w) return this;
        fx.Add(new Effect.Log($"worker {w.WorkerId} registered ({w.Device}, data plane {w.DataHost}:{w.DataPort}); {Workers.Count + 1} worker(s)"));
        return this with { Workers = Workers.SetItem(w.WorkerId, w) };
    }

    CoordinatorState OnWorkerDown(CoordinatorInput.WorkerDown down, List<Effect> fx)
    {
        if (!Workers.ContainsKey(down.WorkerId)) return this;
        var s = this with { Workers = Workers.Remove(down.WorkerId) };
        fx.Add(new Effect.Log($"worker {down.WorkerId} left: {down.Why}", Warning: true));
        if (s.Busy && Run!.Ranks.Contains(down.WorkerId))
            return s.Fail($"worker {down.WorkerId} (rank {Run.Ranks.IndexOf(down.WorkerId)}) was lost during {Phase} at {Run.Step}: {down.Why}", fx);
        return s;
    }

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
            spec = RunSpecValidator.Parse(submit.SpecJson, "(submitted)", checkPaths: false);
        }
        catch (InvalidRunSpecException e)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack("invalid run spec", e.Errors.Select(x => x.ToString()).ToArray())));
            fx.Add(new Effect.Log($"refused a run spec: {string.Join("; ", e.Errors)}", Warning: true));
            return this;
        }
        if (Workers.IsEmpty)
        {
            fx.Add(new Effect.Respond(new RunProtocol.SubmitNack("no workers have joined the cluster", [])));
            return this;
        }

        // Ranks in a stable order; at most one sample per worker and step.
        var ranks = Workers.Keys.OrderBy(k => k, StringComparer.Ordinal).Take(spec.Training.BatchSize).ToImmutableArray();
        var batches = SplitBatch(spec.Training.BatchSize, ranks.Length);
        var runId = $"{spec.Name}-{submit.Now:yyyyMMdd-HHmmss}";
        var peers = ranks.Select((id, r) => new PeerAddress(r, Workers[id].DataHost, Workers[id].DataPort)).ToArray();
        var run = new ActiveRun(runId, spec, submit.SpecJson, ranks, [.. batches], GanScheduleKeys.First,
            Enumerable.Range(0, ranks.Length).ToImmutableHashSet(), ImmutableDictionary<int, StepReduced>.Empty,
            ImmutableDictionary<int, string>.Empty, false, submit.Now, submit.Now, 0);

        fx.Add(new Effect.Respond(new RunProtocol.SubmitAck(runId, ranks.Length, spec.ResolvedOutput)));
        fx.Add(new Effect.StartOutput(runId, spec.ResolvedOutput, submit.SpecJson));
        fx.Add(new Effect.Log($"run {runId}: {spec.Model.Kind} on {spec.Dataset.Kind}, k={spec.Training.K}, {spec.Training.Iterations} iterations, " +
                              $"global batch {spec.Training.BatchSize} over {ranks.Length} worker(s) [{string.Join(", ", batches)}], seed {spec.Training.Seed}"));
        for (var r = 0; r < ranks.Length; r++)
            fx.Add(new Effect.ToWorker(ranks[r], new PrepareRun(runId, submit.SpecJson, r, ranks.Length, batches, submit.Session, peers, Settings.ChecksumEvery)));
        var s = this with { Phase = RunPhase.Starting, Run = run, LastError = null };
        return s.Arm(Settings.PrepareTimeout, fx);
    }

    /// <summary>Global batch B over W workers: B/W each, the remainder to the lowest ranks.</summary>
    public static int[] SplitBatch(int batch, int workers) =>
        Enumerable.Range(0, workers).Select(r => batch / workers + (r < batch % workers ? 1 : 0)).ToArray();

    CoordinatorState OnWorkerMessage(IGanClusterMessage message, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run;
        switch (message)
        {
            case RunPrepared p when Phase == RunPhase.Starting && p.RunId == run!.RunId && run.Pending.Contains(p.Rank):
            {
                var pending = run.Pending.Remove(p.Rank);
                var s = this with { Run = run with { Pending = pending } };
                if (!pending.IsEmpty) return s;
                fx.Add(new Effect.Log($"run {run.RunId}: all {run.WorldSize} worker(s) ready; training"));
                return s.Execute(GanScheduleKeys.First, commit: null, now, fx) with { Phase = RunPhase.Running };
            }
            case PrepareFailed f when Phase == RunPhase.Starting && f.RunId == run!.RunId:
                return Fail($"worker {f.WorkerId} (rank {f.Rank}) could not prepare the run: {f.Reason}", fx);

            case StepReduced r when Phase == RunPhase.Running && r.RunId == run!.RunId && r.Step == run.Step && run.Pending.Contains(r.Rank):
            {
                var s = this with { Run = run with { Pending = run.Pending.Remove(r.Rank), Replies = run.Replies.SetItem(r.Rank, r) } };
                return s.Run!.Pending.IsEmpty ? s.OnStepReduced(now, fx) : s;
            }
            case StepFailed f when Busy && f.RunId == run!.RunId && f.Step == run.Step:
                var who = f.Rank >= 0 && f.Rank < run.WorldSize ? $"worker {run.Ranks[f.Rank]} (rank {f.Rank})" : "a worker";
                return Fail($"{who} failed {f.Step}: {f.Reason}", fx);

            case RunFinishedOnWorker w when Phase == RunPhase.Finishing && w.RunId == run!.RunId && run.Pending.Contains(w.Rank):
            {
                var s = this with { Run = run with { Pending = run.Pending.Remove(w.Rank), FinalChecksums = run.FinalChecksums.SetItem(w.Rank, w.Checksum) } };
                return s.TryComplete(fx);
            }
            default:
                fx.Add(new Effect.Log($"rejected {Describe(message)}: not expected in {Phase}" + (run is null ? "" : $" at {run.RunId} {run.Step}"), Warning: true));
                return this;
        }
    }

    CoordinatorState OnStepReduced(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var step = run.Step;
        var t = run.Spec.Training;

        var checksums = run.Replies.Values.Where(r => r.Checksum is not null).Select(r => (r.Rank, r.Checksum!)).ToList();
        if (checksums.Count > 0 && checksums.Select(c => c.Item2).Distinct().Count() > 1)
            return Fail($"replicas diverged at {step}: parameter checksums " + string.Join(", ", checksums.OrderBy(c => c.Rank).Select(c => $"rank {c.Rank}={c.Item2[..12]}")), fx);

        // NaN guard: every rank holds the same average, so one verdict; the commit then skips it everywhere.
        var s = this;
        if (run.Replies.Values.Any(r => r.NonFinite))
        {
            var consecutive = run.ConsecutiveSkips + 1;
            fx.Add(new Effect.Log($"run {run.RunId}: {step} has non-finite gradients; skipped on every worker ({consecutive} in a row)", Warning: true));
            if (consecutive >= t.MaxNonFiniteSkips)
                return Fail($"diverged: {consecutive} consecutive updates with non-finite gradients (last {step}); the last good checkpoint is kept", fx);
            s = s with { Run = run with { ConsecutiveSkips = consecutive, SkippedInWindow = run.SkippedInWindow + 1 } };
        }
        else if (run.ConsecutiveSkips > 0)
        {
            s = s with { Run = run with { ConsecutiveSkips = 0 } };
        }
        run = s.Run!;
        var stats = run.Replies.Values.Where(r => r.Stats is not null).ToList();
        if (stats.Count > 0)
        {
            double W(Func<WindowStats, double> f) => stats.Sum(r => r.Samples * f(r.Stats!)) / stats.Sum(r => r.Samples);
            var iteration = step.Iteration + 1;
            var seconds = Math.Max((now - run.WindowStartedAt).TotalSeconds, 1e-9);
            var row = new MetricsRow(iteration, W(x => x.LossD), W(x => x.LossG), W(x => x.DReal), W(x => x.DFake),
                (iteration - run.WindowStartIteration) * t.BatchSize / seconds, (now - run.StartedAt).TotalSeconds, run.SkippedInWindow);
            fx.Add(new Effect.AppendMetrics(row));
            fx.Add(new Effect.Publish(new RunProtocol.ProgressReported(run.RunId, row.Iteration, t.Iterations, row.LossD, row.LossG, row.DReal, row.DFake,
                row.ImagesPerSecond, row.ElapsedSeconds)));
            s = s with { Run = run with { WindowStartedAt = now, WindowStartIteration = iteration, SkippedInWindow = 0 } };
        }
        s = s with { Run = s.Run! with { Replies = ImmutableDictionary<int, StepReduced>.Empty } };

        if (step.Phase == StepPhase.Generator)
        {
            var done = step.Iteration + 1;
            if (done == t.Iterations)
            {
                fx.Add(new Effect.Committed(step, AllRanks(run)));
                foreach (var (id, r) in run.Ranks.Select((id, r) => (id, r)))
                    fx.Add(new Effect.ToWorker(id, new FinishRun(run.RunId, step, run.Output)));
                fx.Add(new Effect.Log($"run {run.RunId}: {done} iterations done; finishing"));
                return (s with { Phase = RunPhase.Finishing, Run = s.Run! with { Pending = AllRanks(run).ToImmutableHashSet() } }).Arm(Settings.StepTimeout, fx);
            }
            var sampleEvery = t.SampleEvery > 0 ? t.SampleEvery : run.Spec.Checkpoint.Every;
            var checkpoint = done % run.Spec.Checkpoint.Every == 0;
            if (checkpoint || done % sampleEvery == 0)
            {
                fx.Add(new Effect.Committed(step, AllRanks(run)));
                foreach (var id in run.Ranks)
                    fx.Add(new Effect.ToWorker(id, new SaveArtifacts(run.RunId, done, checkpoint, step)));
                return (s with { Phase = RunPhase.Saving }).Arm(Settings.StepTimeout, fx);
            }
        }
        return s.Execute(GanScheduleKeys.Next(step, t.K), commit: step, now, fx);
    }

    CoordinatorState OnArtifacts(CoordinatorInput.ArtifactsDone a, List<Effect> fx)
    {
        var run = Run;
        if (run is null) return this;
        if (a.Error is not null)
            return Busy ? Fail($"saving the outputs of iteration {a.Iteration} failed: {a.Error}", fx) : this;
        if (Phase == RunPhase.Saving && a.Iteration == run.Step.Iteration + 1)
        {
            fx.Add(new Effect.Log($"run {run.RunId}: outputs of iteration {a.Iteration} saved under {run.Output}"));
            return (this with { Phase = RunPhase.Running }).Execute(GanScheduleKeys.Next(run.Step, run.Spec.Training.K), commit: null, DateTimeOffset.MinValue, fx);
        }
        if (Phase == RunPhase.Finishing && a.Iteration == run.Spec.Training.Iterations)
            return (this with { Run = run with { FinalArtifactsSaved = true } }).TryComplete(fx);
        return this;
    }

    CoordinatorState TryComplete(List<Effect> fx)
    {
        var run = Run!;
        if (!run.Pending.IsEmpty || !run.FinalArtifactsSaved) return this;
        var distinct = run.FinalChecksums.Values.Distinct().ToList();
        if (distinct.Count != 1)
            return Fail("replicas diverged at the end: final checksums " + string.Join(", ", run.FinalChecksums.OrderBy(c => c.Key).Select(c => $"rank {c.Key}={c.Value[..12]}")), fx);
        foreach (var id in run.Ranks) fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, "completed")));
        var message = $"{run.Spec.Training.Iterations} iterations on {run.WorldSize} worker(s); final parameter checksum {distinct[0]}";
        fx.Add(new Effect.Log($"run {run.RunId} completed: {message}"));
        fx.Add(new Effect.Publish(new RunProtocol.RunEnded(run.RunId, "completed", message, run.Output, distinct[0])));
        return this with { Phase = RunPhase.Idle, TimerToken = TimerToken + 1 };
    }

    CoordinatorState OnTimer(long token, List<Effect> fx)
    {
        if (token != TimerToken || !Busy) return this;
        var run = Run!;
        var missing = string.Join(", ", run.Pending.OrderBy(r => r).Select(r => $"{run.Ranks[r]} (rank {r})"));
        return Phase switch
        {
            RunPhase.Starting => Fail($"worker(s) {missing} did not get ready within {Settings.PrepareTimeout.TotalSeconds:F0} s", fx),
            RunPhase.Saving => Fail($"saving the outputs after {run.Step} did not finish within {Settings.StepTimeout.TotalSeconds:F0} s", fx),
            RunPhase.Finishing when run.Pending.IsEmpty => Fail($"the final outputs were not saved within {Settings.StepTimeout.TotalSeconds:F0} s", fx),
            _ => Fail($"worker(s) {missing} did not complete {run.Step} within {Settings.StepTimeout.TotalSeconds:F0} s", fx),
        };
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
            fx.Add(new Effect.ToWorker(id, new ExecuteStep(run.RunId, step, commit, reportStats, reportChecksum)));
        var started = run.StartedAt;
        var window = run.WindowStartedAt;
        if (step == GanScheduleKeys.First && now != DateTimeOffset.MinValue) (started, window) = (now, now);
        var s = this with
        {
            Run = run with { Step = step, Pending = AllRanks(run).ToImmutableHashSet(), StartedAt = started, WindowStartedAt = window },
        };
        return s.Arm(Settings.StepTimeout, fx);
    }

    CoordinatorState Fail(string reason, List<Effect> fx)
    {
        var run = Run;
        fx.Add(new Effect.Log($"run {run?.RunId} failed: {reason}", Warning: true));
        if (run is not null)
        {
            foreach (var id in run.Ranks.Where(Workers.ContainsKey)) fx.Add(new Effect.ToWorker(id, new StopRun(run.RunId, reason)));
            fx.Add(new Effect.Publish(new RunProtocol.RunEnded(run.RunId, "failed", reason, run.Output, null)));
        }
        return this with { Phase = RunPhase.Failed, LastError = reason, TimerToken = TimerToken + 1 };
    }

    CoordinatorState Arm(TimeSpan delay, List<Effect> fx)
    {
        var token = TimerToken + 1;
        fx.Add(new Effect.Schedule(token, delay));
        return this with { TimerToken = token };
    }

    static int[] AllRanks(ActiveRun run) => Enumerable.Range(0, run.WorldSize).ToArray();

    static string Describe(IGanClusterMessage m) => m switch
    {
        StepReduced r => $"StepReduced {r.RunId} {r.Step} from rank {r.Rank}",
        StepFailed f => $"StepFailed {f.RunId} {f.Step} from rank {f.Rank}",
        RunPrepared p => $"RunPrepared {p.RunId} from rank {p.Rank}",
        RunFinishedOnWorker w => $"RunFinishedOnWorker {w.RunId} from rank {w.Rank}",
        _ => m.GetType().Name,
    };
}

/// <summary><see cref="GanSchedule"/> on the protocol's step keys.</summary>
public static class GanScheduleKeys
{
    public static StepKey First => ToKey(GanSchedule.First);
    public static StepKey Next(StepKey step, int k) => ToKey(GanSchedule.Next(ToId(step), k));
    public static StepKey ToKey(StepId id) => new(id.Iteration, id.Phase == Training.Training.Phase.Discriminator ? StepPhase.Discriminator : StepPhase.Generator, id.SubStep);
    public static StepId ToId(StepKey key) => new(key.Iteration, key.Phase == StepPhase.Discriminator ? Training.Training.Phase.Discriminator : Training.Training.Phase.Generator, key.SubStep);
}
