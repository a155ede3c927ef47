using GanCluster.Actors.Coordinator;
using GanCluster.Protocol;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The coordinator and simulated workers, without actors: every effect is answered as well-behaved workers and a
/// working checkpoint actor would, and each worker keeps the log of updates its replica applied.
/// </summary>
public sealed class Sim
{
    public static readonly DateTimeOffset T0 = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);
    public static readonly CoordinatorSettings Settings = new(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(10), ChecksumEvery: 2) { OutputRoot = "/" };

    readonly Queue<Effect> _queue = new();
    public CoordinatorState State = CoordinatorState.Initial(Settings);
    public readonly List<Effect> All = [];
    /// <summary>Updates each worker's replica applied, in order; a replica given rank 0's state takes rank 0's log.</summary>
    public readonly Dictionary<string, List<StepKey>> Applied = new();
    public readonly Dictionary<string, int> Rank = new();
    public readonly HashSet<string> Dead = [];
    public DateTimeOffset Now = T0;
    /// <summary>What <see cref="Effect.FindCheckpoint"/> finds (default: nothing).</summary>
    public CoordinatorInput.CheckpointFound Found = new(null, null, []);
    /// <summary>Called before a worker answers an update; may kill workers or add some.</summary>
    public Action<Sim, ExecuteStep, string>? BeforeReduce;
    /// <summary>Called before rank 0 answers a save.</summary>
    public Action<Sim, SaveArtifacts>? BeforeSnapshot;
    /// <summary>Rank 0 snapshots saves but the checkpoint actor never reports them written (a slow or lost upload).</summary>
    public bool HoldUploads;
    /// <summary>The mode quality the checkpoint actor reports with each published save.</summary>
    public Func<long, string?> Quality = _ => null;

    public IReadOnlyList<Effect> Feed(CoordinatorInput input)
    {
        var (next, fx) = State.Handle(input);
        State = next;
        All.AddRange(fx);
        foreach (var e in fx) _queue.Enqueue(e);
        return fx;
    }

    public IReadOnlyList<Effect> Worker(IGanClusterMessage m) => Feed(new CoordinatorInput.FromWorker(m, Now));

    public void Up(string id, string device = "cpu") => Feed(new CoordinatorInput.WorkerUp(new WorkerInfo(id, device, "127.0.0.1", 9000 + Applied.Count), Now));

    public void Workers(int n)
    {
        for (var i = 0; i < n; i++) Up($"w{i}");
    }

    public void Kill(string id)
    {
        Dead.Add(id);
        Feed(new CoordinatorInput.WorkerDown(id, "killed", Now));
    }

    public string Submit(string json)
    {
        var fx = Feed(new CoordinatorInput.Submit(json, 42, Now));
        // The checkpoint actor's answer comes at once (a second one, when pumped, is ignored).
        if (fx.OfType<Effect.FindCheckpoint>().Any()) Feed(Found);
        return ((RunProtocol.SubmitAck)fx.OfType<Effect.Respond>().Single().Message).RunId;
    }

    /// <summary>
    /// A coordinator (re)started with run t-1 (output /runs/t) on record, whose newest valid checkpoint is at
    /// <paramref name="iteration"/> of a world of <paramref name="worldSize"/>; then pumped (it waits for workers).
    /// </summary>
    public void Restart(string spec, long iteration, int worldSize, int perWorkerBatch, string checkpoint = "", string? cancelledBy = null,
        params string[] skipped)
    {
        Found = new CoordinatorInput.CheckpointFound(checkpoint == "" ? $"/runs/t/checkpoints/iter-{iteration:D8}" : checkpoint,
            new CoordinatorCheckpoint("t-1", iteration, iteration * worldSize * perWorkerBatch, worldSize, perWorkerBatch, [], 0), skipped);
        Feed(new CoordinatorInput.Recover(new RunRecord("t-1", "/runs/t", spec, cancelledBy), 77, Now));
        Pump();
    }

    /// <summary>
    /// A 10-iteration run on <paramref name="workers"/> workers that ana@laptop cancels during iteration
    /// <paramref name="at"/>, pumped; with <paramref name="holdUploads"/> it stays Cancelling (its checkpoint unwritten).
    /// </summary>
    public static Sim Cancelled(long at, int workers = 2, bool holdUploads = false)
    {
        var h = new Sim { HoldUploads = holdUploads };
        h.Workers(workers);
        var runId = h.Submit(Spec(iterations: 10));
        h.BeforeReduce = (sim, e, _) =>
        {
            if (e.Step.Iteration == at && sim.State.Run!.CancelledBy is null) sim.Feed(new CoordinatorInput.Cancel(runId, "ana@laptop", sim.Now));
        };
        h.Pump();
        return h;
    }

    /// <summary>Answers effects until none is left.</summary>
    public void Pump()
    {
        for (var guard = 0; _queue.Count > 0 && guard < 200_000; guard++) Answer(_queue.Dequeue());
    }

    List<StepKey> Log(string id) => Applied.TryGetValue(id, out var l) ? l : Applied[id] = [];

    void Apply(string id, StepKey? step)
    {
        if (step is not null) Log(id).Add(step);
    }

    void Answer(Effect effect)
    {
        Now = Now.AddMilliseconds(10);
        switch (effect)
        {
            case Effect.FindCheckpoint:
                Feed(Found);
                break;
            case Effect.ToWorker w when Dead.Contains(w.WorkerId):
                break;
            case Effect.ToWorker { Message: PrepareRun p } w:
            {
                var id = w.WorkerId;
                Rank[id] = p.Rank;
                if (p.Resume is { ApplyPosition: true } r && Log(id).LastOrDefault() != r.Position) Apply(id, r.Position);
                Worker(new RunPrepared(p.RunId, p.Formation, p.Rank, id, 100));
                if (p.Rank == 0) SyncFromRankZero(p);
                break;
            }
            case Effect.ToWorker { Message: ExecuteStep e } w:
                Apply(w.WorkerId, e.Commit);
                BeforeReduce?.Invoke(this, e, w.WorkerId);
                if (Dead.Contains(w.WorkerId)) break;
                Worker(new StepReduced(e.RunId, e.Formation, e.Step, Rank[w.WorkerId], 5,
                    e.ReportStats ? new WindowStats(1, 2, 0.6, 0.4, 1) : null, e.ReportChecksum ? "abc123abc123abc" : null));
                break;
            case Effect.ToWorker { Message: AbortStep a } w:
                Worker(new StepAborted(a.RunId, a.Formation, w.WorkerId, true, Log(w.WorkerId).LastOrDefault()));
                break;
            case Effect.ToWorker { Message: SaveArtifacts s } w:
                Apply(w.WorkerId, s.Commit);
                if (Rank[w.WorkerId] != 0) break;
                BeforeSnapshot?.Invoke(this, s);
                Worker(new ArtifactsSnapshotted(s.RunId, s.Formation, s.Iteration, 3));
                if (!HoldUploads) Feed(new CoordinatorInput.ArtifactsDone(s.RunId, s.Iteration, null, Quality(s.Iteration)));
                break;
            case Effect.ToWorker { Message: FinishRun f } w:
                Apply(w.WorkerId, f.Commit);
                Worker(new RunFinishedOnWorker(f.RunId, f.Formation, Rank[w.WorkerId], "final-checksum-0123456789"));
                if (Rank[w.WorkerId] == 0 && !HoldUploads)
                    Feed(new CoordinatorInput.ArtifactsDone(State.Run!.RunId, State.Run.Spec.Training.Iterations, null, Quality(State.Run.Spec.Training.Iterations)));
                break;
        }
    }

    /// <summary>After a formation, every member holds rank 0's state: its log becomes rank 0's.</summary>
    void SyncFromRankZero(PrepareRun p)
    {
        if (p.Resume is null) return;
        var zero = State.Run!.Ranks[0];
        foreach (var id in State.Run.Ranks.Where(id => id != zero)) Applied[id] = [.. Log(zero)];
    }

    public static string Spec(int k = 1, int iterations = 4, int every = 1000, string extra = "") =>
        $$$"""{"name": "t", "dataset": {"kind": "ring8"}, "model": {"kind": "mlp"}, "training": {"k": {{{k}}}, "iterations": {{{iterations}}}, "batchSize": 10, "logEvery": 2{{{extra}}}}, "checkpoint": {"every": {{{every}}}, "keep": 1}}""";

    /// <summary>Every update of <paramref name="iterations"/> iterations at k, in Algorithm 1's order.</summary>
    public static List<StepKey> Schedule(int iterations, int k)
    {
        var all = new List<StepKey>();
        for (var s = GanScheduleKeys.First; s.Iteration < iterations; s = GanScheduleKeys.Next(s, k)) all.Add(s);
        return all;
    }

    public RunProtocol.RunEnded? Ended => All.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunEnded>().LastOrDefault();
    public IEnumerable<T> Sent<T>() => All.OfType<Effect.ToWorker>().Select(w => w.Message).OfType<T>();
}

public class CoordinatorStateTests
{
    [Theory]
    [InlineData(1, "D0 G")]
    [InlineData(3, "D0 D1 D2 G")]
    public void Each_iteration_commits_k_D_updates_then_one_G_update_on_every_worker(int k, string perIteration)
    {
        var h = new Sim();
        h.Workers(3);
        h.Submit(Sim.Spec(k, iterations: 4, every: 2));
        h.Pump();
        var committed = h.All.OfType<Effect.Committed>().ToList();
        Assert.All(committed, c => Assert.Equal(new[] { 0, 1, 2 }, c.Ranks));
        var log = string.Join(" | ", committed.GroupBy(c => c.Step.Iteration)
            .Select(g => string.Join(' ', g.Select(c => c.Step.Phase == StepPhase.Generator ? "G" : $"D{c.Step.SubStep}"))));
        Assert.Equal(string.Join(" | ", Enumerable.Repeat(perIteration, 4)), log);
        Assert.All(h.Applied.Values, l => Assert.Equal(Sim.Schedule(4, k), l));

        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Equal(RunState.Idle, h.State.Phase);
        Assert.Equal(2, h.All.OfType<Effect.AppendMetrics>().Count());          // logEvery 2 of 4 iterations
        var save = Assert.Single(h.Sent<SaveArtifacts>().Where(s => s.Iteration == 2).DistinctBy(s => s.Iteration));
        Assert.Equal(2, CoordinatorCheckpoint.FromJson(save.CoordinatorJson)!.Iteration);
        Assert.Single(h.All.OfType<Effect.PersistRun>());
        Assert.Single(h.All.OfType<Effect.ForgetRun>());
    }

    [Fact]
    public void The_end_of_a_run_reports_the_mode_quality_of_its_final_samples_and_the_log_that_of_every_save()
    {
        var h = new Sim { Quality = i => $"modes {i}/8, high-quality 9{i}.0 % of 2500" };
        h.Workers(2);
        h.Submit(Sim.Spec(iterations: 4, every: 2));
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.EndsWith("; final samples: modes 4/8, high-quality 94.0 % of 2500", h.Ended.Message);
        Assert.Contains(h.All.OfType<Effect.Log>(), l => l.Text.EndsWith("outputs of iteration 2 written under /runs/t; samples: modes 2/8, high-quality 92.0 % of 2500"));
    }

    [Fact]
    public void A_run_on_workers_that_mix_cpu_and_cuda_is_refused_naming_them()
    {
        var h = new Sim();
        h.Up("a", "cuda:0");
        h.Up("b", "cpu");
        h.Up("c", "cuda:1");
        var fx = h.Feed(new CoordinatorInput.Submit(Sim.Spec(), 42, h.Now));
        var nack = Assert.IsType<RunProtocol.SubmitNack>(fx.OfType<Effect.Respond>().Single().Message);
        Assert.Contains("mix device kinds: cpu (b) and cuda (a, c)", nack.Reason);
        Assert.Equal(RunState.Idle, h.State.Phase);
        Assert.Empty(h.Sent<PrepareRun>());

        // Without the odd one out the same spec runs, on cuda:0 and cuda:1 together.
        h.Feed(new CoordinatorInput.WorkerDown("b", "stopped", h.Now));
        h.Submit(Sim.Spec());
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
    }

    [Fact]
    public void A_worker_of_another_device_kind_that_registers_mid_run_is_not_taken_in()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 6));
        h.BeforeReduce = (sim, e, _) =>
        {
            if (e.Step == new StepKey(2, StepPhase.Discriminator, 0) && !sim.State.Workers.ContainsKey("gpu")) sim.Up("gpu", "cuda:0");
        };
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.DoesNotContain(h.Sent<PrepareRun>(), p => p.Rank >= 2);               // never re-formed with it
        Assert.Contains(h.All.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunNoted>(),
            n => n.Warning && n.Text.Contains("does not join run " + runId + ", which trains on cpu only"));
    }

    [Fact]
    public void A_late_save_outcome_of_an_earlier_run_never_touches_the_run_being_driven()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 6));
        var late = false;
        h.BeforeReduce = (sim, e, _) =>
        {
            if (e.Step.Iteration != 3 || late) return;
            late = true;
            // What a full disk did: the previous run's upload failing long after it ended.
            sim.Feed(new CoordinatorInput.ArtifactsDone("previous-run", 500, "/runs/old/.upload-00000500/G.bin: No space left on device"));
        };
        h.Pump();
        Assert.True(late);
        Assert.Equal((RunOutcome.Completed, runId), (h.Ended!.Outcome, h.Ended.RunId));
        Assert.Contains(h.All.OfType<Effect.Log>(), l => l.Warning && l.Text.StartsWith("ignored the outcome of saving iteration 500 of run previous-run"));
    }

    [Fact]
    public void Status_gives_the_run_progress_and_every_worker_with_its_rank()
    {
        var h = new Sim();
        h.Workers(2);
        Assert.Equal(["w0: -1", "w1: -1"], h.State.Status().Members!.Select(m => $"{m.WorkerId}: {m.Rank}"));
        var runId = h.Submit(Sim.Spec(iterations: 6));
        RunProtocol.StatusReported? during = null;
        h.BeforeReduce = (sim, e, _) =>
        {
            if (e.Step == new StepKey(3, StepPhase.Discriminator, 0) && during is null)
            {
                sim.Up("late");                                                     // registered, not yet in the run
                during = sim.State.Status();
            }
        };
        h.Pump();

        Assert.Equal((RunState.Running, runId, 3, 3L, 6L), (during!.State, during.RunId, during.Workers, during.Iteration, during.Total));
        Assert.Equal(["late: -1", "w0: 0", "w1: 1"], during.Members!.Select(m => $"{m.WorkerId}: {m.Rank}"));
        Assert.All(during.Members!, m => Assert.Equal("cpu", m.Device));
        var after = h.State.Status();
        Assert.Equal((RunState.Idle, 6L), (after.State, after.Iteration));
        Assert.All(after.Members!, m => Assert.Equal(-1, m.Rank));
    }

    [Fact]
    public void The_G_update_is_not_sent_before_every_worker_reduced_the_last_D_update()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(k: 2, iterations: 3));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, session, 1, "w1", 1));
        var d0 = new StepKey(0, StepPhase.Discriminator, 0);
        var d1 = new StepKey(0, StepPhase.Discriminator, 1);
        h.Worker(new StepReduced(runId, session, d0, 0, 5, null, null));
        h.Worker(new StepReduced(runId, session, d0, 1, 5, null, null));
        Assert.Equal(d1, h.State.Run!.Step);

        var afterOne = h.Worker(new StepReduced(runId, session, d1, 0, 5, null, null));
        Assert.Empty(afterOne.OfType<Effect.ToWorker>());                      // rank 1 has not reduced D1 yet
        var afterBoth = h.Worker(new StepReduced(runId, session, d1, 1, 5, null, null));
        var sent = afterBoth.OfType<Effect.ToWorker>().Select(w => (ExecuteStep)w.Message).ToList();
        Assert.Equal(2, sent.Count);
        Assert.All(sent, e => Assert.Equal((new StepKey(0, StepPhase.Generator, 0), d1), (e.Step, e.Commit)));
    }

    [Fact]
    public void Stale_duplicate_and_unknown_step_messages_are_rejected_and_logged()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 3));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, session, 1, "w1", 1));
        var d0 = new StepKey(0, StepPhase.Discriminator, 0);
        h.Worker(new StepReduced(runId, session, d0, 0, 5, null, null));

        var before = h.State;
        foreach (var bad in new IGanClusterMessage[]
                 {
                     new StepReduced(runId, session, d0, 0, 5, null, null),                                    // duplicate
                     new StepReduced(runId, session, new StepKey(0, StepPhase.Generator, 0), 1, 5, null, null), // not the current step
                     new StepReduced("other-run", session, d0, 1, 5, null, null),                              // unknown run
                     new StepReduced(runId, session - 1, d0, 1, 5, null, null),                                // an earlier formation
                     new RunPrepared(runId, session, 1, "w1", 1),                                              // wrong phase
                 })
        {
            var fx = h.Worker(bad);
            var log = Assert.Single(fx.OfType<Effect.Log>());
            Assert.True(log.Warning);
            Assert.StartsWith("rejected", log.Text);
            Assert.Empty(fx.OfType<Effect.ToWorker>());
            Assert.Same(before, h.State);
        }
    }

    [Fact]
    public void A_worker_killed_mid_step_aborts_it_everywhere_and_the_survivors_go_on_without_a_gap_or_a_repeat()
    {
        var h = new Sim();
        h.Workers(3);
        // w2 dies while the cluster reduces it5/D0: nobody may apply it, and the survivors go on from it4/G.
        h.BeforeReduce = (sim, e, id) =>
        {
            if (id == "w2" && e.Step == new StepKey(5, StepPhase.Discriminator, 0)) sim.Kill("w2");
        };
        h.Submit(Sim.Spec(iterations: 10, every: 4));
        h.Pump();

        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Contains("1 worker failure(s) recovered", h.Ended.Message);
        Assert.Equal(2, h.Sent<AbortStep>().Count());                            // to the two survivors
        var reform = h.Sent<PrepareRun>().Where(p => p.Resume is not null).ToList();
        Assert.Equal(2, reform.Count);
        Assert.All(reform, p => Assert.Equal(new StepKey(4, StepPhase.Generator, 0), p.Resume!.Position));
        Assert.All(reform, p => Assert.False(p.Resume!.ApplyPosition));
        Assert.All(reform, p => Assert.Equal(new[] { 5, 5 }, p.LocalBatches));   // global batch 10 kept over 2 workers
        // Each survivor applied every update exactly once, in order.
        Assert.Equal(Sim.Schedule(10, 1), h.Applied["w0"]);
        Assert.Equal(Sim.Schedule(10, 1), h.Applied["w1"]);
        // One metrics row per logged iteration: none twice, none missing.
        Assert.Equal(new long[] { 2, 4, 6, 8, 10 }, h.All.OfType<Effect.AppendMetrics>().Select(m => m.Row.Iteration));

        // Clients following the run are told, in order, without the run id the log lines start with.
        var notes = h.All.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunNoted>().Select(n => (n.Warning, n.Text)).ToList();
        var lost = notes.FindIndex(n => n == (true, "worker w2 left: killed"));
        var aborting = notes.FindIndex(n => n.Warning && n.Text.StartsWith("worker w2 (rank 2) was lost during Running at it5/D0: killed; aborting it5/D0 everywhere"));
        var reformed = notes.FindIndex(n => !n.Warning && n.Text.StartsWith("re-forming with 2 worker(s) [w0, w1], batches [5, 5], after it4/G"));
        Assert.True(lost >= 0 && lost < aborting && aborting < reformed, string.Join("\n", notes));
        Assert.Contains((false, "outputs of iteration 8 written under /runs/t"), notes);
        Assert.All(notes, n => Assert.DoesNotContain(h.State.Run!.RunId, n.Text.Split(';')[0]));
    }

    [Fact]
    public void Failures_beyond_the_hourly_retry_budget_end_the_run_with_a_clear_status()
    {
        var h = new Sim();
        h.Workers(4);
        h.BeforeReduce = (sim, e, id) =>
        {
            if (e.Step.Phase == StepPhase.Generator && e.Step.Iteration is 1 or 3 && id == sim.State.Run!.Ranks[^1]) sim.Kill(id);
        };
        h.Submit(Sim.Spec(iterations: 8, extra: ", \"maxFailuresPerHour\": 1"));
        h.Pump();
        Assert.Equal(RunOutcome.Failed, h.Ended!.Outcome);
        Assert.Contains("retry budget is spent (2 failures within an hour, training.maxFailuresPerHour = 1)", h.Ended.Message);
        Assert.Equal(RunState.Failed, h.State.Phase);
        Assert.Single(h.All.OfType<Effect.ForgetRun>());
    }

    [Theory]
    [InlineData("global", new[] { 4, 3, 3 })]
    [InlineData("per-worker", new[] { 5, 5, 5 })]
    public void A_worker_that_joins_mid_run_is_included_at_the_next_iteration_boundary_with_the_state_of_rank_0(string mode, int[] batches)
    {
        var h = new Sim();
        h.Workers(2);
        h.BeforeReduce = (sim, e, id) =>
        {
            if (id == "w0" && e.Step == new StepKey(2, StepPhase.Discriminator, 0)) sim.Up("w9");
        };
        h.Submit(Sim.Spec(iterations: 6, extra: $", \"batchMode\": \"{mode}\""));
        h.Pump();

        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        var join = h.Sent<PrepareRun>().Where(p => p.Resume is not null).ToList();
        Assert.Equal(3, join.Count);
        Assert.All(join, p => Assert.Equal(new StepKey(2, StepPhase.Generator, 0), p.Resume!.Position));   // the end of the same iteration
        Assert.All(join, p => Assert.True(p.Resume!.ApplyPosition));
        Assert.All(join, p => Assert.Equal(batches, p.LocalBatches));
        Assert.Equal(2, join.Single(p => p.Rank == 2).Rank);                     // the newcomer is never rank 0
        Assert.Empty(h.Sent<AbortStep>());
        Assert.Empty(h.State.Run!.Failures);
        // The newcomer holds rank 0's state from the boundary on, so its log matches the others'.
        Assert.Equal(Sim.Schedule(6, 1), h.Applied["w9"]);
        Assert.Equal(Sim.Schedule(6, 1), h.Applied["w0"]);
    }

    [Fact]
    public void A_worker_that_asks_to_leave_is_released_at_the_boundary_and_its_departure_is_not_a_failure()
    {
        var h = new Sim();
        h.Workers(3);
        h.BeforeReduce = (sim, e, id) =>
        {
            if (id == "w1" && e.Step == new StepKey(1, StepPhase.Discriminator, 0)) sim.Worker(new LeaveRun("w1"));
        };
        h.Submit(Sim.Spec(iterations: 5));
        h.Pump();
        Assert.Contains(h.All.OfType<Effect.ToWorker>(), w => w.WorkerId == "w1" && w.Message is LeaveAccepted);
        h.Dead.Add("w1");
        h.Feed(new CoordinatorInput.WorkerDown("w1", "left the cluster", h.Now));     // the node leaves afterwards
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Empty(h.State.Run!.Failures);
        Assert.DoesNotContain(h.Sent<PrepareRun>().Where(p => p.Resume is not null), p => p.Peers.Length != 2);
        Assert.Empty(h.Sent<AbortStep>());
    }

    [Fact]
    public void A_restarted_coordinator_resumes_its_run_from_the_newest_valid_checkpoint_and_says_which_it_skipped()
    {
        var h = new Sim();
        h.Restart(Sim.Spec(iterations: 10, every: 2), iteration: 4, worldSize: 2, perWorkerBatch: 5, skipped: "/runs/t/checkpoints/iter-00000006: G.bin fails its checksum");
        Assert.Equal(RunState.Resuming, h.State.Phase);
        Assert.Contains(h.All.OfType<Effect.Log>(), l => l.Warning && l.Text.Contains("iter-00000006: G.bin fails its checksum"));
        Assert.Equal(4, h.All.OfType<Effect.StartOutput>().Single().ResumeAt);
        h.Up("a");
        Assert.Empty(h.Sent<PrepareRun>());                                      // waits for the 2 workers it had
        h.Up("b");
        h.Pump();
        var prepare = h.Sent<PrepareRun>().Where(p => p.RunId == "t-1").Take(2).ToList();
        Assert.All(prepare, p => Assert.Equal(new ResumeFrom(new StepKey(3, StepPhase.Generator, 0), false, 40, "/runs/t/checkpoints/iter-00000004"), p.Resume));
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Equal(Sim.Schedule(10, 1).Skip(8), h.Applied["a"]);               // iterations 4..9 only
        Assert.Equal(new long[] { 6, 8, 10 }, h.All.OfType<Effect.AppendMetrics>().Select(m => m.Row.Iteration));
    }

    [Fact]
    public void The_checkpoint_search_answers_for_its_own_folder_and_one_that_failed_ends_the_run_naming_the_folder()
    {
        var h = new Sim();
        h.Feed(new CoordinatorInput.Recover(new RunRecord("t-1", "/runs/t", Sim.Spec(iterations: 4), null), 77, h.Now));
        Assert.Equal(RunState.Resuming, h.State.Phase);
        // The search runs off the coordinator's thread: an answer about another folder (an earlier run's) is stale.
        h.Feed(new CoordinatorInput.CheckpointFound(null, null, [], "/runs/other"));
        Assert.Equal((RunState.Resuming, false), (h.State.Phase, h.State.Run!.Located));
        // A search that could not read the folder never lets the run start over from iteration 0 (and prune it).
        var fx = h.Feed(new CoordinatorInput.CheckpointFound(null, null, [], "/runs/t", "Permission denied"));
        Assert.Equal(RunState.Failed, h.State.Phase);
        Assert.Equal("could not look for checkpoints under /runs/t: Permission denied", h.State.LastError);
        Assert.Empty(fx.OfType<Effect.StartOutput>());
    }

    [Fact]
    public void A_client_can_follow_a_resuming_or_running_run_and_is_told_how_a_finished_one_ended()
    {
        var h = new Sim();
        // A coordinator that moved to another seed knows the run from its record while it waits for the workers.
        h.Restart(Sim.Spec(iterations: 4), iteration: 2, worldSize: 1, perWorkerBatch: 10);
        var resuming = h.Feed(new CoordinatorInput.Watch("t-1"));
        Assert.Equal(new RunProtocol.WatchAck("t-1", RunState.Resuming, 2), Answer(resuming));
        Assert.Single(resuming.OfType<Effect.AddWatcher>());

        var other = h.Feed(new CoordinatorInput.Watch("t-0"));
        Assert.Contains("driving run t-1, not t-0", Assert.IsType<RunProtocol.WatchNack>(Answer(other)).Reason);
        Assert.Empty(other.OfType<Effect.AddWatcher>());

        h.Up("a");
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        var ended = h.Feed(new CoordinatorInput.Watch("t-1"));
        Assert.Equal(h.Ended, Answer(ended));                                    // a late follower still learns the end
        Assert.Empty(ended.OfType<Effect.AddWatcher>());

        var unknown = new Sim().Feed(new CoordinatorInput.Watch("t-1"));
        Assert.Contains("does not know run t-1", Assert.IsType<RunProtocol.WatchNack>(Answer(unknown)).Reason);
    }

    [Fact]
    public void A_restarted_coordinator_with_fewer_workers_resumes_after_the_grace_period()
    {
        var h = new Sim();
        h.Restart(Sim.Spec(iterations: 4), iteration: 2, worldSize: 3, perWorkerBatch: 3, checkpoint: "/c");
        h.Up("a");
        Assert.Empty(h.Sent<PrepareRun>());
        var timer = h.All.OfType<Effect.Schedule>().Last();
        h.Feed(new CoordinatorInput.TimerFired(timer.Token, h.Now));
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Equal(new[] { 10 }, h.Sent<PrepareRun>().First().LocalBatches);
    }

    [Fact]
    public void A_step_that_times_out_drops_the_silent_worker_and_the_others_go_on()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 3));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        var fx = h.Worker(new RunPrepared(runId, session, 1, "w1", 1));
        var timer = fx.OfType<Effect.Schedule>().Last();
        h.Worker(new StepReduced(runId, session, new StepKey(0, StepPhase.Discriminator, 0), 0, 5, null, null));

        Assert.Empty(h.Feed(new CoordinatorInput.TimerFired(timer.Token - 1, h.Now)));  // an old timer does nothing
        var timedOut = h.Feed(new CoordinatorInput.TimerFired(timer.Token, h.Now));
        Assert.Equal(RunState.Recovering, h.State.Phase);
        Assert.Contains(timedOut.OfType<Effect.Log>(), l => l.Warning && l.Text.Contains("w1 (rank 1)") && l.Text.Contains("it0/D0"));
        Assert.Equal(2, timedOut.OfType<Effect.ToWorker>().Count(w => w.Message is AbortStep));
        // w0 answers, w1 stays silent past the abort timeout: it is dropped and w0 goes on alone.
        var abort = timedOut.OfType<Effect.ToWorker>().Select(w => w.Message).OfType<AbortStep>().First();
        h.Worker(new StepAborted(runId, abort.Formation, "w0", true, null));
        h.Dead.Add("w1");
        h.Feed(new CoordinatorInput.TimerFired(h.State.TimerToken, h.Now));
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Equal(Sim.Schedule(3, 1), h.Applied["w0"]);
    }

    [Fact]
    public void Diverged_replicas_fail_the_run_loudly()
    {
        var h = new Sim();
        h.Workers(2);
        h.BeforeReduce = (sim, e, id) =>
        {
            if (e.ReportChecksum && id == "w1") sim.Dead.Add("w1");   // answer for w1 by hand below
        };
        var runId = h.Submit(Sim.Spec(iterations: 5));
        h.Pump();
        var execute = h.Sent<ExecuteStep>().Last();
        Assert.True(execute.ReportChecksum);                                     // checksumEvery = 2
        h.Worker(new StepReduced(runId, execute.Formation, execute.Step, 1, 5, null, "bbbbbbbbbbbbbbbb"));
        Assert.Equal(RunState.Failed, h.State.Phase);
        Assert.Contains("replicas diverged", h.Ended!.Message);
    }

    [Fact]
    public void An_invalid_spec_is_refused_with_every_reason_and_the_coordinator_stays_idle()
    {
        var h = new Sim();
        h.Workers(1);
        var fx = h.Feed(new CoordinatorInput.Submit("""{"training": {"k": 0, "batchSize": -1, "batchMode": "x"}, "model": {"kind": "gan"}}""", 1, Sim.T0));
        var nack = Assert.IsType<RunProtocol.SubmitNack>(Assert.Single(fx.OfType<Effect.Respond>()).Message);
        Assert.Contains(nack.Errors, e => e.StartsWith("training.k:"));
        Assert.Contains(nack.Errors, e => e.StartsWith("training.batchSize:"));
        Assert.Contains(nack.Errors, e => e.StartsWith("training.batchMode:"));
        Assert.Contains(nack.Errors, e => e.StartsWith("model.kind:"));
        Assert.Equal(RunState.Idle, h.State.Phase);
        Assert.Empty(fx.OfType<Effect.ToWorker>());
    }

    [Fact]
    public void A_run_needs_workers_and_a_busy_cluster_refuses_a_second_run()
    {
        var h = new Sim();
        var none = h.Feed(new CoordinatorInput.Submit(Sim.Spec(), 1, Sim.T0));
        Assert.Contains("no workers", Assert.IsType<RunProtocol.SubmitNack>(none.OfType<Effect.Respond>().Single().Message).Reason);
        h.Workers(1);
        h.Feed(new CoordinatorInput.Submit(Sim.Spec(), 1, Sim.T0));
        var busy = h.Feed(new CoordinatorInput.Submit(Sim.Spec(), 1, Sim.T0));
        Assert.Contains("busy", Assert.IsType<RunProtocol.SubmitNack>(busy.OfType<Effect.Respond>().Single().Message).Reason);
        Assert.Equal(new[] { 4, 3, 3 }, CoordinatorState.SplitBatch(10, 3));
    }

    [Fact]
    public void Non_finite_updates_are_skipped_and_too_many_in_a_row_fail_the_run()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 50, extra: ", \"maxNonFiniteSkips\": 3"));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 10));
        h.Worker(new RunPrepared(runId, session, 1, "w1", 10));

        IReadOnlyList<Effect> Reduce(bool nonFinite)
        {
            var step = h.State.Run!.Step;
            h.Worker(new StepReduced(runId, session, step, 0, 4, null, null, nonFinite));
            return h.Worker(new StepReduced(runId, session, step, 1, 4, null, null, nonFinite));
        }

        Reduce(true);
        Reduce(true);
        Reduce(false);                                   // a finite update resets the count
        Assert.Equal(0, h.State.Run!.ConsecutiveSkips);
        Reduce(true);
        Reduce(true);
        Assert.Equal(RunState.Running, h.State.Phase);
        Reduce(true);
        Assert.Equal(RunState.Failed, h.State.Phase);
        Assert.Contains("diverged: 3 consecutive updates with non-finite gradients", h.Ended!.Message);
    }

    // ---------------------------------------------------------------- cancel

    static IGanClusterMessage Answer(IReadOnlyList<Effect> fx) => Assert.Single(fx.OfType<Effect.Respond>()).Message;

    [Fact]
    public void A_cancelled_run_stops_at_the_next_iteration_boundary_on_a_checkpoint_of_it_and_is_forgotten()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(k: 2, iterations: 10));
        IGanClusterMessage? ack = null;
        h.BeforeReduce = (sim, e, id) =>
        {
            if (ack is null && e.Step == new StepKey(3, StepPhase.Discriminator, 1)) ack = Answer(sim.Feed(new CoordinatorInput.Cancel(runId, "ana@laptop", sim.Now)));
        };
        h.Pump();

        Assert.Contains("stops at the next iteration boundary (it is at it3/D1)", Assert.IsType<RunProtocol.CancelAck>(ack).Message);
        Assert.All(h.Applied.Values, l => Assert.Equal(Sim.Schedule(4, 2), l));   // iteration 3 finished, nothing of 4 applied
        Assert.DoesNotContain(h.Sent<ExecuteStep>(), e => e.Step.Iteration >= 4);
        var saves = h.Sent<SaveArtifacts>().ToList();
        Assert.Equal(2, saves.Count);                                              // one checkpoint save, to both ranks
        Assert.All(saves, s => Assert.Equal((4L, true), (s.Iteration, s.Checkpoint)));
        Assert.Equal(4, CoordinatorCheckpoint.FromJson(saves[0].CoordinatorJson)!.Iteration);
        Assert.Equal(2, h.Sent<StopRun>().Count(s => s.Reason == "cancelled"));

        var ended = h.Ended!;
        Assert.Equal(RunOutcome.Cancelled, ended.Outcome);
        Assert.Contains("stopped by ana@laptop after 4 of 10 iterations", ended.Message);
        Assert.Contains("iter-00000004; submit the same spec again to continue from it", ended.Message);
        Assert.Equal(RunState.Idle, h.State.Phase);
        Assert.Single(h.All.OfType<Effect.ForgetRun>());                          // a restarted coordinator does not resume it
    }

    [Fact]
    public void A_cancel_during_a_checkpoint_save_ends_on_that_checkpoint_without_writing_another()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 10, every: 2));
        h.BeforeSnapshot = (sim, s) =>
        {
            if (s.Iteration == 4) sim.Feed(new CoordinatorInput.Cancel(runId, "ana@laptop", sim.Now));
        };
        h.Pump();

        Assert.Equal(new long[] { 2, 4 }, h.Sent<SaveArtifacts>().Select(s => s.Iteration).Distinct());
        Assert.Equal(4, h.Sent<SaveArtifacts>().Count());
        Assert.Equal(RunOutcome.Cancelled, h.Ended!.Outcome);
        Assert.Contains("after 4 of 10 iterations; checkpoint", h.Ended.Message);
        Assert.All(h.Applied.Values, l => Assert.Equal(Sim.Schedule(4, 1), l));
    }

    [Fact]
    public void A_cancelled_run_ends_only_when_its_checkpoint_is_written_and_says_so_when_rank_0_is_lost_first()
    {
        foreach (var lose in new[] { false, true })
        {
            var h = Sim.Cancelled(at: 2, holdUploads: true);
            var runId = h.State.Run!.RunId;
            Assert.Equal(RunState.Cancelling, h.State.Phase);
            Assert.Null(h.Ended);
            Assert.Contains("is already being cancelled", Assert.IsType<RunProtocol.CancelAck>(Answer(h.Feed(new CoordinatorInput.Cancel(runId, "bo", h.Now)))).Message);

            if (lose)
            {
                h.Kill("w1");                                                      // rank 1: its part is done
                Assert.Null(h.Ended);
                h.Kill("w0");                                                      // rank 0 held the checkpoint
                Assert.Equal(RunOutcome.Cancelled, h.Ended!.Outcome);
                Assert.Contains("rank 0 (w0) was lost before the checkpoint of iteration 3 was written; submit the same spec again to continue from the newest checkpoint before it",
                    h.Ended.Message);
            }
            else
            {
                h.Feed(new CoordinatorInput.ArtifactsDone(h.State.Run!.RunId, 3, null));
                Assert.Equal(RunOutcome.Cancelled, h.Ended!.Outcome);
                Assert.Contains("after 3 of 10 iterations; checkpoint", h.Ended.Message);
            }
            Assert.Equal(RunState.Idle, h.State.Phase);
        }

        // The upload never finishes: the step timeout fails the run, naming the checkpoint.
        var t = Sim.Cancelled(at: 0, workers: 1, holdUploads: true);
        t.Feed(new CoordinatorInput.TimerFired(t.State.TimerToken, t.Now));
        Assert.Equal(RunOutcome.Failed, t.Ended!.Outcome);
        Assert.Contains("the checkpoint of iteration 1 that the cancelled run ends on was not written within 10 s", t.Ended.Message);
    }

    [Fact]
    public void A_run_resuming_without_workers_is_cancelled_at_once_and_its_checkpoints_are_kept()
    {
        var h = new Sim();
        h.Restart(Sim.Spec(iterations: 10), iteration: 6, worldSize: 2, perWorkerBatch: 5);
        Assert.Equal(RunState.Resuming, h.State.Phase);

        var fx = h.Feed(new CoordinatorInput.Cancel("t-1", "ana@laptop", h.Now));
        Assert.Contains("it ends now", Assert.IsType<RunProtocol.CancelAck>(Answer(fx)).Message);
        Assert.Equal(RunOutcome.Cancelled, h.Ended!.Outcome);
        Assert.Contains("after 6 of 10 iterations; checkpoint", h.Ended.Message);
        Assert.Contains("iter-00000006", h.Ended.Message);
        Assert.Single(fx.OfType<Effect.ForgetRun>());
        Assert.Empty(h.Sent<SaveArtifacts>());

        h.Up("late");                                                               // a worker that comes now starts nothing
        h.Pump();
        Assert.Empty(h.Sent<PrepareRun>());
    }

    [Fact]
    public void A_cancel_is_kept_with_the_run_so_a_coordinator_that_takes_over_ends_the_run_instead_of_resuming_it()
    {
        var h = Sim.Cancelled(at: 5, holdUploads: true);
        var runId = h.State.Run!.RunId;
        Assert.Equal(RunState.Cancelling, h.State.Phase);                        // the seed dies here, checkpoint 6 not yet written
        var record = h.All.OfType<Effect.PersistRun>().Last().Record;
        Assert.Equal((runId, "ana@laptop"), (record.RunId, record.CancelledBy));

        var next = new Sim();                                                      // the coordinator on another seed
        next.Workers(2);
        next.Restart(record.SpecJson, iteration: 4, worldSize: 2, perWorkerBatch: 5, cancelledBy: record.CancelledBy);
        Assert.Equal(RunOutcome.Cancelled, next.Ended!.Outcome);
        Assert.Contains("stopped by ana@laptop after 4 of 10 iterations; checkpoint /runs/t/checkpoints/iter-00000004", next.Ended.Message);
        Assert.Empty(next.Sent<PrepareRun>());
        Assert.Single(next.All.OfType<Effect.ForgetRun>());
    }

    [Fact]
    public void A_cancel_is_refused_with_a_reason_when_there_is_nothing_it_could_stop()
    {
        var h = new Sim();
        Assert.Contains("no run is active (the coordinator is Idle)",
            Assert.IsType<RunProtocol.CancelNack>(Answer(h.Feed(new CoordinatorInput.Cancel("t-1", "ana", h.Now)))).Reason);

        h.Workers(1);
        var runId = h.Submit(Sim.Spec(iterations: 2));
        Assert.Contains($"driving run {runId}, not t-0",
            Assert.IsType<RunProtocol.CancelNack>(Answer(h.Feed(new CoordinatorInput.Cancel("t-0", "ana", h.Now)))).Reason);

        // All iterations trained, the final files on their way: the end is moments away and comes as "completed".
        h.HoldUploads = true;
        h.Pump();
        Assert.Equal(RunState.Finishing, h.State.Phase);
        Assert.Contains("has trained all its iterations",
            Assert.IsType<RunProtocol.CancelNack>(Answer(h.Feed(new CoordinatorInput.Cancel(runId, "ana", h.Now)))).Reason);
        h.Feed(new CoordinatorInput.ArtifactsDone(h.State.Run!.RunId, 2, null));
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Contains($"run {runId} has already ended (completed)",
            Assert.IsType<RunProtocol.CancelNack>(Answer(h.Feed(new CoordinatorInput.Cancel(runId, "ana", h.Now)))).Reason);
    }
}
