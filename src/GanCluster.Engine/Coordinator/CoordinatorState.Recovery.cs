using System.Collections.Immutable;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using GanCluster.Training.Spec;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Engine.Coordinator;

/// <summary>Failures, re-forms after a loss, and a restarted coordinator resuming from a checkpoint.</summary>
public sealed partial record CoordinatorState
{
    // ---------------------------------------------------------------- failures

    /// <summary>
    /// A worker was lost or an update failed: stop the segment in flight on every remaining worker, then re-form without
    /// the lost ones from the most advanced state the survivors hold. Counted against the retry budget.
    /// </summary>
    CoordinatorState Recover(string reason, bool counted, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        if (Phase == RunState.Resuming) return this;
        if (counted)
        {
            var (failures, spent) = FailureBudget.Count(run.Failures, now, run.Spec.Training.MaxFailuresPerHour);
            run = run with { Failures = [.. failures] };
            if (spent)
                return WithRun(run).Fail($"{reason}; the retry budget is spent ({failures.Count} failures within an hour, training.maxFailuresPerHour = " +
                                         $"{run.Spec.Training.MaxFailuresPerHour})", fx);
        }
        if (Stage is Stage.Finishing { Checksums.Count: > 0, Pending.Count: 0 })
            return WithRun(run);   // the end is only waiting for the final files
        Note(fx, run.RunId, $"run {run.RunId}: {reason}; stopping every worker and re-forming from the most advanced state they hold (at least {(run.Committed?.ToString() ?? "the start")})",
            warning: true);
        var formation = run.Formation + 1;
        var ask = run.Ranks.Where(Workers.ContainsKey).ToImmutableHashSet();
        foreach (var id in ask) fx.Add(new Effect.ToWorker(id, new AbortStep(run.RunId, formation)));
        var s = this with
        {
            Stage = new Stage.Recovering(ask, ImmutableDictionary<string, StepAborted>.Empty),
            Run = run with { Formation = formation },
        };
        return ask.IsEmpty ? s.FinishRecovery(now, fx) : s.Arm(Settings.StepTimeout, fx);
    }

    CoordinatorState AbortAnswered(string workerId, StepAborted? answer, List<Effect> fx)
    {
        var recovering = (Stage.Recovering)Stage;
        recovering = new Stage.Recovering(recovering.Pending.Remove(workerId),
            answer is null ? recovering.Answers : recovering.Answers.SetItem(workerId, answer));
        var s = this with { Stage = recovering };
        return recovering.Pending.IsEmpty ? s.FinishRecovery(DateTimeOffset.MinValue, fx) : s;
    }

    CoordinatorState FinishRecovery(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var recovering = (Stage.Recovering)Stage;
        // Workers that did not answer are dropped; if they are alive, their next registration makes them joiners.
        var silent = recovering.Pending;
        foreach (var id in silent) Note(fx, run.RunId, $"worker {id} did not answer the abort within {Settings.StepTimeout.TotalSeconds:F0} s; dropped", warning: true);
        var s = this with { Workers = Workers.RemoveRange(silent) };
        s = s.ReleaseLeavers(fx);
        run = s.Run!;
        var replicas = run.Ranks.Select(id => recovering.Answers.TryGetValue(id, out var a) && a.HasReplica ? a : null).OfType<StepAborted>()
            .Select(a => (a.WorkerId, a.LastApplied));
        var decision = FailurePolicy.AfterLoss(replicas, run.Committed, run.SamplesConsumed, run.LocalBatches.Sum(), run.Spec.Training.K);
        var members = s.NextMembers(decision is FailureDecision.Reform r ? r.Holders : []);
        if (members.IsEmpty) return s.WaitForWorkers(now, fx);
        if (decision is not FailureDecision.Reform { Position: var position, SamplesConsumed: var samples })
        {
            Note(fx, run.RunId, $"run {run.RunId}: no surviving replica holds {run.Committed}; resuming from the newest checkpoint", warning: true);
            return s.FindCheckpoint(members.Length, fx);
        }
        s = s.WithRun(run with { Committed = position, SamplesConsumed = samples });
        return s.Form(members, new ResumeFrom(position, samples, Checkpoint: null, run.ConsecutiveSkips), now, fx);
    }

    /// <summary>No worker is left: the state in memory is gone, so the run goes on from its newest checkpoint once workers come.</summary>
    CoordinatorState WaitForWorkers(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        Note(fx, run.RunId, $"run {run.RunId}: no workers left; it resumes from the newest checkpoint when workers join", warning: true);
        return FindCheckpoint(1, fx);
    }

    /// <summary>Resuming: look for the newest valid checkpoint, then wait for <paramref name="expectedWorkers"/> workers.</summary>
    CoordinatorState FindCheckpoint(int expectedWorkers, List<Effect> fx)
    {
        fx.Add(new Effect.FindCheckpoint(Run!.Output));
        return this with { TimerToken = TimerToken + 1, Stage = new Stage.Resuming(Located: false, Checkpoint: null, expectedWorkers) };
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
        var run = NewRun(r.Record.RunId, spec, r.Record.SpecJson, r.Now, Settings) with { Formation = r.Formation, CancelledBy = r.Record.CancelledBy };
        return (this with { Run = run, LastError = null }).FindCheckpoint(1, fx);
    }

    CoordinatorState OnCheckpointFound(CoordinatorInput.CheckpointFound c, List<Effect> fx)
    {
        if (Stage is not Stage.Resuming resuming) return this;
        var run = Run!;
        // The search runs off the coordinator's thread: an answer for another run's folder, or a second one, is stale.
        if (resuming.Located || (c.Output is not null && c.Output != run.Output)) return this;
        // Never train from iteration 0 over a folder whose checkpoints could not be read: it would prune them.
        if (c.Error is not null) return Fail($"could not look for checkpoints under {run.Output}: {c.Error}", fx);
        foreach (var skipped in c.Skipped) Note(fx, run.RunId, $"skipping checkpoint {skipped}; using an older one", warning: true);
        if (run.CancelledBy is not null)   // cancelled while recovering: nothing newer than this checkpoint is left
            return WithRun(run with { CheckpointAt = c.State?.Iteration ?? -1, CheckpointWritten = c.Path is not null && c.State is not null }).EndCancelled(null, fx);
        ActiveRun next;
        long resumeAt;
        var expected = resuming.ExpectedWorkers;
        if (c.Path is null || c.State is null)
        {
            Note(fx, run.RunId, $"run {run.RunId}: no checkpoint under {run.Output}; training from iteration 0");
            next = run with { Committed = null, SamplesConsumed = 0 };
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
                WindowStartIteration = st.Iteration,
                CheckpointAt = st.Iteration,
                CheckpointWritten = true,
            };
            resumeAt = st.Iteration;
            expected = Math.Max(1, st.WorldSize);
        }
        fx.Add(new Effect.StartOutput(run.RunId, run.Output, run.SpecJson, resumeAt));
        var s = this with { Run = next with { Ranks = [] }, Stage = new Stage.Resuming(Located: true, c.State is null ? null : c.Path, expected) };
        if (s.Workers.Count >= expected) return s.FormAfterWait(DateTimeOffset.MinValue, fx);
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
        var checkpoint = (Stage as Stage.Resuming)?.Checkpoint;
        if (checkpoint is null && run.Committed is null)
            return s.Form(members, resume: null, now, fx);
        return s.Form(members, new ResumeFrom(run.Committed, run.SamplesConsumed, checkpoint, run.ConsecutiveSkips), now, fx);
    }

}
