using System.Collections.Immutable;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Engine.Coordinator;

/// <summary>Training between boundaries: segments, their ends, saves, the end of a run.</summary>
public sealed partial record CoordinatorState
{
    CoordinatorState OnWorkerMessage(IGanClusterMessage message, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run;
        switch (message)
        {
            case RunPrepared p when Stage is Stage.Starting starting && Current(p.RunId, p.Formation) && starting.Pending.Contains(p.Rank):
            {
                var pending = starting.Pending.Remove(p.Rank);
                var s = this with { Stage = new Stage.Starting(pending) };
                if (!pending.IsEmpty) return s;
                var ready = Run!;
                Note(fx, ready.RunId, $"run {ready.RunId}: all {ready.WorldSize} worker(s) ready; training from {(ready.Committed is null ? "the start" : $"after {ready.Committed}")}");
                return s.Continue(now, fx);
            }
            case PrepareFailed f when Stage is Stage.Starting && Current(f.RunId, f.Formation):
                return Fail($"worker {f.WorkerId} (rank {f.Rank}) could not prepare the run: {f.Reason}", fx);

            case SegmentDone d when Stage is Stage.Running running && Current(d.RunId, d.Formation) && running.Pending.Contains(d.Rank):
            {
                var next = running with { Pending = running.Pending.Remove(d.Rank), Ends = running.Ends.SetItem(d.Rank, d) };
                var s = this with { Stage = next };
                return next.Pending.IsEmpty ? s.OnSegmentEnded(next.Ends.Values, now, fx) : s;
            }
            case SegmentProgress p when Stage is Stage.Running && Current(p.RunId, p.Formation):
                return Arm(Settings.StepTimeout, fx);   // the timeout measures silence, not a long segment
            case StepFailed f when Phase is RunState.Starting or RunState.Running or RunState.Saving or RunState.Finishing && Current(f.RunId, f.Formation):
                var who = f.Rank >= 0 && f.Rank < run!.WorldSize ? $"worker {run.Ranks[f.Rank]} (rank {f.Rank})" : "a worker";
                return Recover($"{who} failed {f.Step}: {f.Reason}", counted: true, now, fx);
            case StepFailed when Phase == RunState.Recovering:
                return this;   // the ring broke under the others too: already being handled

            case StepAborted a when Stage is Stage.Recovering recovering && Current(a.RunId, a.Formation) && recovering.Pending.Contains(a.WorkerId):
                return AbortAnswered(a.WorkerId, a, fx);

            case ArtifactsSnapshotted a when Stage is Stage.Saving saving && Current(a.RunId, a.Formation) && a.Iteration == run!.CompletedIterations:
            {
                var held = (now - saving.StartedAt).TotalMilliseconds;
                fx.Add(new Effect.Log(FormattableString.Invariant(
                    $"run {run.RunId}: outputs of iteration {a.Iteration} snapshotted; training held up {held:F0} ms (snapshot {a.StallMs:F0} ms), written in the background")));
                return Continue(now, fx);
            }

            case RunFinishedOnWorker w when Stage is Stage.Finishing finishing && Current(w.RunId, w.Formation) && finishing.Pending.Contains(w.Rank):
                return (this with { Stage = finishing with { Pending = finishing.Pending.Remove(w.Rank), Checksums = finishing.Checksums.SetItem(w.Rank, w.Checksum) } })
                    .TryComplete(fx);

            case LeaveRun l:
            {
                if (run is null || !Busy || !run.Ranks.Contains(l.WorkerId))
                {
                    fx.Add(new Effect.Respond(new LeaveAccepted(l.WorkerId)));
                    return this;
                }
                Note(fx, run.RunId, $"worker {l.WorkerId} asked to leave run {run.RunId}; it is released at the next iteration boundary");
                return WithRun(run with { Leaving = run.Leaving.Add(l.WorkerId) }).YieldSegment(fx);
            }
            default:
                fx.Add(new Effect.Log($"rejected {Describe(message)}: not expected in {Phase}" + (run is null ? "" : $" at {run.RunId} after {run.Committed?.ToString() ?? "the start"}"), Warning: true));
                return this;
        }
    }

    bool Current(string runId, long formation) => Run is { } r && r.RunId == runId && r.Formation == formation;

    /// <summary>Asks the running segment to end at the next iteration boundary (once per segment).</summary>
    CoordinatorState YieldSegment(List<Effect> fx)
    {
        if (Stage is not Stage.Running { Yielding: false } running) return this;
        var run = Run!;
        foreach (var id in run.Ranks) fx.Add(new Effect.ToWorker(id, new YieldSegment(run.RunId, run.Formation)));
        return this with { Stage = running with { Yielding = true } };
    }

    /// <summary>Every rank ended its segment: check they agree, log, then the boundary's work or the next segment.</summary>
    CoordinatorState OnSegmentEnded(IEnumerable<SegmentDone> segmentEnds, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var t = run.Spec.Training;
        var ends = segmentEnds.OrderBy(d => d.Rank).ToList();
        var last = ends[0].Last;
        if (ends.Any(d => d.Last != last))
            return Fail("replicas ended a segment at different updates: " + string.Join(", ", ends.Select(d => $"rank {d.Rank} after {d.Last}")), fx);
        var checksums = ends.Where(d => d.Checksum is not null).ToList();
        if (checksums.Select(d => d.Checksum).Distinct().Count() > 1)
            return Fail($"replicas diverged by {last}: parameter checksums " + string.Join(", ", checksums.Select(d => $"rank {d.Rank}={d.Checksum![..12]}")), fx);

        // NaN guard: every rank holds the same averages, so every rank counted the same skips.
        var end = ends[0];
        fx.Add(new Effect.Committed(last!, AllRanks(run)));
        var samples = run.SamplesConsumed + (GanSchedule.DiscriminatorUpdatesThrough(last, t.K) - GanSchedule.DiscriminatorUpdatesThrough(run.Committed, t.K)) * run.LocalBatches.Sum();
        run = run with
        {
            Committed = last, SamplesConsumed = samples,
            SkippedInWindow = run.SkippedInWindow + end.Skipped, SkippedTotal = run.SkippedTotal + end.Skipped, ConsecutiveSkips = end.Consecutive,
        };
        if (end.Skipped > 0)
            Note(fx, run.RunId, $"run {run.RunId}: {end.Skipped} update(s) with non-finite gradients skipped on every worker by {last} ({end.Consecutive} in a row at the end)", warning: true);
        if (end.Diverged)
            return WithRun(run).Fail($"diverged: {t.MaxNonFiniteSkips} consecutive updates with non-finite gradients (by {last}); the last good checkpoint is kept", fx);

        var done = run.CompletedIterations;
        var stats = ends.Where(d => d.Stats is not null).Select(d => (d.Samples, d.Stats!)).ToList();
        if (stats.Count > 0)
        {
            var w = Combine(stats);
            var seconds = Math.Max((now - run.WindowStartedAt).TotalSeconds, 1e-9);
            var row = new MetricsRow(done, w.LossD, w.LossG, w.DReal, w.DFake, (done - run.WindowStartIteration) * run.LocalBatches.Sum() / seconds,
                (now - run.StartedAt).TotalSeconds, (int)run.SkippedInWindow);
            fx.Add(new Effect.AppendMetrics(row, w.AllReduceMs));
            fx.Add(new Effect.Publish(new RunProtocol.ProgressReported(run.RunId, row.Iteration, t.Iterations, row.LossD, row.LossG, row.DReal, row.DFake,
                row.ImagesPerSecond, row.ElapsedSeconds)));
            run = run with { WindowStartedAt = now, WindowStartIteration = done, SkippedInWindow = 0 };
        }
        var s = WithRun(run);
        if (done == t.Iterations) return s.Finish(fx);
        if (run.CancelledBy is not null) return s.HonourCancel(now, fx);
        if (run.Cadence.SaveAt(done) is { } save) return s.Save(done, save.Checkpoint, now, fx);
        return s.Continue(now, fx);
    }

    /// <summary>The window's means over ranks, weighted by their batches; one rank's own means unchanged (a world of one logs what a local run logs).</summary>
    static WindowStats Combine(IReadOnlyList<(int Samples, WindowStats Stats)> stats)
    {
        if (stats.Count == 1) return stats[0].Stats;
        double W(Func<WindowStats, double> f) => stats.Sum(r => r.Samples * f(r.Stats)) / stats.Sum(r => r.Samples);
        return new WindowStats(W(x => x.LossD), W(x => x.LossG), W(x => x.DReal), W(x => x.DFake), stats[0].Stats.Iterations,
            stats.Average(r => r.Stats.AllReduceMs));   // every rank waits in the same ring: a plain mean
    }

    /// <summary>At an iteration boundary (a formation is ready, a save snapshotted, a segment ended): the next segment, a re-form, or the end.</summary>
    CoordinatorState Continue(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var t = run.Spec.Training;
        if (run.CompletedIterations >= t.Iterations) return Finish(fx);
        if (run.CancelledBy is not null) return HonourCancel(now, fx);
        if (MembershipChanged(run)) return Reform(now, fx);
        return StartSegment(now, fx);
    }

    /// <summary>Every worker trains on its own to the next boundary.</summary>
    CoordinatorState StartSegment(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var done = run.CompletedIterations;
        var until = run.Cadence.NextBoundary(done);
        var every = Settings.ChecksumEvery;
        var checksum = every > 0 && until / every > done / every;
        foreach (var id in run.Ranks) fx.Add(new Effect.ToWorker(id, new RunSegment(run.RunId, run.Formation, until, checksum)));
        var started = run.StartedAt;
        var window = run.WindowStartedAt;
        if (run.Committed is null && now != DateTimeOffset.MinValue) (started, window) = (now, now);
        var s = this with
        {
            Stage = new Stage.Running(until, [.. AllRanks(run)], ImmutableDictionary<int, SegmentDone>.Empty, Yielding: false),
            Run = run with { StartedAt = started, WindowStartedAt = window },
        };
        return s.Arm(Settings.StepTimeout, fx);
    }

    /// <summary>A re-form at an iteration boundary (a join or a graceful leave): every member holds the same state.</summary>
    CoordinatorState Reform(DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        var s = ReleaseLeavers(fx);
        var members = s.NextMembers(run.Ranks);
        if (members.IsEmpty) return s.WaitForWorkers(now, fx);
        return s.Form(members, new ResumeFrom(run.Committed, run.SamplesConsumed, Checkpoint: null, run.ConsecutiveSkips), now, fx);
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

    CoordinatorState Save(long done, bool checkpoint, DateTimeOffset now, List<Effect> fx)
    {
        var run = Run!;
        if (checkpoint) run = run with { CheckpointAt = done, CheckpointWritten = false };
        var json = CheckpointJson(run);
        foreach (var id in run.Ranks)
            fx.Add(new Effect.ToWorker(id, new SaveArtifacts(run.RunId, run.Formation, done, checkpoint, json)));
        return (this with { Stage = new Stage.Saving(now), Run = run }).Arm(Settings.StepTimeout, fx);
    }

    CoordinatorState Finish(List<Effect> fx)
    {
        var run = Run!;
        var json = CheckpointJson(run);
        foreach (var id in run.Ranks)
            fx.Add(new Effect.ToWorker(id, new FinishRun(run.RunId, run.Formation, run.Output, json)));
        fx.Add(new Effect.Log($"run {run.RunId}: {run.Spec.Training.Iterations} iterations done; finishing"));
        var stage = new Stage.Finishing([.. AllRanks(run)], ImmutableDictionary<int, string>.Empty, ArtifactsSaved: false);
        return (this with { Stage = stage }).Arm(Settings.StepTimeout, fx);
    }

    static string CheckpointJson(ActiveRun run) =>
        new CoordinatorCheckpoint(run.RunId, run.CompletedIterations, run.SamplesConsumed, run.WorldSize, run.PerWorkerBatch,
            [.. run.Failures], run.SkippedTotal).ToJson();
}
