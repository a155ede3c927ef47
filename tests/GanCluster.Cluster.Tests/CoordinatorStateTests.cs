using GanCluster.Engine;
using GanCluster.Engine.Coordinator;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The coordinator and simulated workers, without actors: every effect is answered as well-behaved workers and a
/// working checkpoint actor would, and each worker keeps the log of updates its replica applied. A formation trains a
/// segment iteration by iteration, as workers do: a hook runs before each iteration, a lost member breaks the ring,
/// and a yield the coordinator asked for ends the segment after the iteration in progress.
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
    /// <summary>Called before the formation trains an iteration of a segment; may kill workers, add some, cancel, leave.</summary>
    public Action<Sim, long>? BeforeIteration;
    /// <summary>When the ring breaks during an iteration: how many of its updates each survivor had applied already.</summary>
    public readonly Dictionary<string, int> Partial = new();
    readonly HashSet<(long Formation, long Until)> _segmentsRun = [];
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration == at && sim.State.Run!.CancelledBy is null) sim.Feed(new CoordinatorInput.Cancel(runId, "ana@laptop", sim.Now));
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
                Worker(new RunPrepared(p.RunId, p.Formation, p.Rank, id, 100));
                if (p.Rank == 0) SyncFromRankZero(p);
                break;
            }
            case Effect.ToWorker { Message: RunSegment r }:
                if (_segmentsRun.Add((r.Formation, r.Until))) Train(r);
                break;
            case Effect.ToWorker { Message: AbortStep a } w:
                Worker(new StepAborted(a.RunId, a.Formation, w.WorkerId, true, Log(w.WorkerId).LastOrDefault()));
                break;
            case Effect.ToWorker { Message: SaveArtifacts s } w:
                if (Rank[w.WorkerId] != 0) break;
                BeforeSnapshot?.Invoke(this, s);
                Worker(new ArtifactsSnapshotted(s.RunId, s.Formation, s.Iteration, 3));
                if (!HoldUploads) Feed(new CoordinatorInput.ArtifactsDone(s.RunId, s.Iteration, null, Quality(s.Iteration)));
                break;
            case Effect.ToWorker { Message: FinishRun f } w:
                Worker(new RunFinishedOnWorker(f.RunId, f.Formation, Rank[w.WorkerId], "final-checksum-0123456789"));
                if (Rank[w.WorkerId] == 0 && !HoldUploads)
                    Feed(new CoordinatorInput.ArtifactsDone(State.Run!.RunId, State.Run.Spec.Training.Iterations, null, Quality(State.Run.Spec.Training.Iterations)));
                break;
        }
    }

    /// <summary>
    /// The formation trains from its position up to the segment's end, iteration by iteration, each update applied
    /// on every member at once; it stops after an iteration once the coordinator asked to yield, and a member lost
    /// mid-iteration breaks the ring under the others (who report the failure and keep what they had applied).
    /// </summary>
    void Train(RunSegment r)
    {
        var run = State.Run!;
        var ranks = run.Ranks;
        var k = run.Spec.Training.K;
        for (var it = run.CompletedIterations; it < r.Until; it++)   // the formation's position
        {
            BeforeIteration?.Invoke(this, it);
            var steps = GanSchedule.Iteration(it, k).Where(step => GanSchedule.UpdatesThrough(step, k) > GanSchedule.UpdatesThrough(run.Committed, k)).ToList();
            if (ranks.Any(Dead.Contains) || State.Run?.Formation != r.Formation || State.Stage is not Stage.Running running)
            {
                foreach (var id in ranks.Where(id => !Dead.Contains(id)))
                {
                    foreach (var step in steps.Take(Partial.GetValueOrDefault(id))) Apply(id, step);
                    Worker(new StepFailed(r.RunId, r.Formation, steps[Partial.GetValueOrDefault(id)], Rank[id], "the ring broke"));
                }
                return;
            }
            foreach (var id in ranks) steps.ForEach(step => Apply(id, step));
            if (running.Yielding || it + 1 == r.Until)
            {
                var done = it + 1;
                foreach (var id in ranks)
                    Worker(new SegmentDone(r.RunId, r.Formation, Rank[id], steps[^1], 5, Cadence.Of(run.Spec).IsLog(done) ? new WindowStats(1, 2, 0.6, 0.4, 1) : null,
                        r.ReportChecksum ? "abc123abc123abc" : null, 0, 0, false));
                return;
            }
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
        for (var s = GanSchedule.First; s.Iteration < iterations; s = GanSchedule.Next(s, k)) all.Add(s);
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
    public void Workers_train_each_segment_on_their_own_and_every_boundary_is_committed_on_every_worker(int k, string perIteration)
    {
        var h = new Sim();
        h.Workers(3);
        h.Submit(Sim.Spec(k, iterations: 4, every: 2));
        h.Pump();
        // Two segments (logEvery 2), each ending on a G update that all three ranks reached.
        var committed = h.All.OfType<Effect.Committed>().ToList();
        Assert.All(committed, c => Assert.Equal(new[] { 0, 1, 2 }, c.Ranks));
        Assert.Equal(new[] { new StepKey(1, StepPhase.Generator, 0), new StepKey(3, StepPhase.Generator, 0) }, committed.Select(c => c.Step));
        Assert.Equal(new long[] { 2, 2, 2, 4, 4, 4 }, h.Sent<RunSegment>().Select(r => r.Until));
        var log = string.Join(" | ", h.Applied["w0"].GroupBy(c => c.Iteration)
            .Select(g => string.Join(' ', g.Select(c => c.Phase == StepPhase.Generator ? "G" : $"D{c.SubStep}"))));
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration == 2 && !sim.State.Workers.ContainsKey("gpu")) sim.Up("gpu", "cuda:0");
        };
        h.Pump();
        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.DoesNotContain(h.Sent<PrepareRun>(), p => p.Rank >= 2);               // never re-formed with it
        Assert.Empty(h.Sent<YieldSegment>());                                       // nor did it interrupt a segment
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration != 3 || late) return;
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration == 2 && during is null)
            {
                sim.Up("late");                                                     // registered, not yet in the run
                during = sim.State.Status();
            }
        };
        h.Pump();

        Assert.Equal((RunState.Running, runId, 3, 2L, 6L), (during!.State, during.RunId, during.Workers, during.Iteration, during.Total));
        Assert.Equal(["late: -1", "w0: 0", "w1: 1"], during.Members!.Select(m => $"{m.WorkerId}: {m.Rank}"));
        Assert.All(during.Members!, m => Assert.Equal("cpu", m.Device));
        var after = h.State.Status();
        Assert.Equal((RunState.Idle, 6L), (after.State, after.Iteration));
        Assert.All(after.Members!, m => Assert.Equal(-1, m.Rank));
    }

    [Fact]
    public void A_segment_ends_when_every_rank_has_ended_it_at_the_same_update_and_the_next_one_goes_to_the_next_boundary()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(k: 2, iterations: 3));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        var first = h.Worker(new RunPrepared(runId, session, 1, "w1", 1)).OfType<Effect.ToWorker>().Select(w => w.Message).OfType<RunSegment>().ToList();
        Assert.Equal(2, first.Count);
        Assert.All(first, r => Assert.Equal((2L, true), (r.Until, r.ReportChecksum)));   // logEvery 2; checksumEvery 2

        var end = new StepKey(1, StepPhase.Generator, 0);
        var afterOne = h.Worker(new SegmentDone(runId, session, 0, end, 5, new WindowStats(1, 2, 0.6, 0.4, 2), "c", 0, 0, false));
        Assert.Empty(afterOne.OfType<Effect.ToWorker>());                          // rank 1 has not ended it yet
        var afterBoth = h.Worker(new SegmentDone(runId, session, 1, end, 5, new WindowStats(1, 2, 0.6, 0.4, 2), "c", 0, 0, false));
        Assert.Equal(end, Assert.Single(afterBoth.OfType<Effect.Committed>()).Step);
        Assert.Equal(2, Assert.Single(afterBoth.OfType<Effect.AppendMetrics>()).Row.Iteration);
        Assert.Equal(40, h.State.Run!.SamplesConsumed);                            // 4 D updates of a global batch of 10
        var next = afterBoth.OfType<Effect.ToWorker>().Select(w => w.Message).OfType<RunSegment>().ToList();
        Assert.Equal(2, next.Count);
        Assert.All(next, r => Assert.Equal(3, r.Until));                            // the end of the run

        // Ranks that end at different updates cannot both be right.
        var bad = new Sim();
        bad.Workers(2);
        var other = bad.Submit(Sim.Spec(iterations: 3));
        bad.Worker(new RunPrepared(other, session, 0, "w0", 1));
        bad.Worker(new RunPrepared(other, session, 1, "w1", 1));
        bad.Worker(new SegmentDone(other, session, 0, new StepKey(1, StepPhase.Generator, 0), 5, null, null, 0, 0, false));
        bad.Worker(new SegmentDone(other, session, 1, new StepKey(0, StepPhase.Generator, 0), 5, null, null, 0, 0, false));
        Assert.Equal(RunState.Failed, bad.State.Phase);
        Assert.Contains("ended a segment at different updates: rank 0 after it1/G, rank 1 after it0/G", bad.Ended!.Message);
    }

    [Fact]
    public void Stale_duplicate_and_unknown_segment_messages_are_rejected_and_logged()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 3));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, session, 1, "w1", 1));
        var end = new StepKey(1, StepPhase.Generator, 0);
        h.Worker(new SegmentDone(runId, session, 0, end, 5, null, null, 0, 0, false));

        var before = h.State;
        foreach (var bad in new IGanClusterMessage[]
                 {
                     new SegmentDone(runId, session, 0, end, 5, null, null, 0, 0, false),       // duplicate
                     new SegmentDone("other-run", session, 1, end, 5, null, null, 0, 0, false), // unknown run
                     new SegmentDone(runId, session - 1, 1, end, 5, null, null, 0, 0, false),   // an earlier formation
                     new RunPrepared(runId, session, 1, "w1", 1),                                 // wrong phase
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
    public void A_worker_killed_mid_segment_stops_it_everywhere_and_the_survivors_go_on_without_a_gap_or_a_repeat()
    {
        var h = new Sim();
        h.Workers(3);
        // w2 dies during iteration 5: its all-reduce never completes anywhere, and the survivors go on from it4/G.
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration == 5 && !sim.Dead.Contains("w2")) sim.Kill("w2");
        };
        h.Submit(Sim.Spec(iterations: 10, every: 4));
        h.Pump();

        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        Assert.Contains("1 worker failure(s) recovered", h.Ended.Message);
        Assert.Equal(2, h.Sent<AbortStep>().Count());                            // to the two survivors
        var reform = h.Sent<PrepareRun>().Where(p => p.Resume is not null).ToList();
        Assert.Equal(2, reform.Count);
        Assert.All(reform, p => Assert.Equal(new StepKey(4, StepPhase.Generator, 0), p.Resume!.Position));
        Assert.All(reform, p => Assert.Equal(5 * 10, p.Resume!.SamplesConsumed));   // the data position of it4/G
        Assert.All(reform, p => Assert.Equal(new[] { 5, 5 }, p.LocalBatches));   // global batch 10 kept over 2 workers
        // Each survivor applied every update exactly once, in order.
        Assert.Equal(Sim.Schedule(10, 1), h.Applied["w0"]);
        Assert.Equal(Sim.Schedule(10, 1), h.Applied["w1"]);
        // One metrics row per logged iteration: none twice, none missing.
        Assert.Equal(new long[] { 2, 4, 6, 8, 10 }, h.All.OfType<Effect.AppendMetrics>().Select(m => m.Row.Iteration));

        // Clients following the run are told, in order, without the run id the log lines start with.
        var notes = h.All.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunNoted>().Select(n => (n.Warning, n.Text)).ToList();
        var lost = notes.FindIndex(n => n == (true, "worker w2 left: killed"));
        var aborting = notes.FindIndex(n => n.Warning && n.Text.StartsWith("worker w2 (rank 2) was lost during Running after it3/G: killed; stopping every worker"));
        var reformed = notes.FindIndex(n => !n.Warning && n.Text.StartsWith("re-forming with 2 worker(s) [w0, w1], batches [5, 5], after it4/G"));
        Assert.True(lost >= 0 && lost < aborting && aborting < reformed, string.Join("\n", notes));
        Assert.Contains((false, "outputs of iteration 8 written under /runs/t"), notes);
        Assert.All(notes, n => Assert.DoesNotContain(h.State.Run!.RunId, n.Text.Split(';')[0]));
    }

    [Fact]
    public void After_a_loss_the_survivors_go_on_from_the_most_advanced_state_one_of_them_holds()
    {
        var h = new Sim();
        h.Workers(3);
        // w2 dies inside iteration 5 after the all-reduce of it5/D0 completed on w1 only: w1 applied it, w0 did not.
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration != 5 || sim.Dead.Contains("w2")) return;
            sim.Partial["w1"] = 1;
            sim.Kill("w2");
        };
        h.Submit(Sim.Spec(iterations: 8, every: 4));
        h.Pump();

        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        var reform = h.Sent<PrepareRun>().Where(p => p.Resume is not null).ToList();
        Assert.Equal(["w1", "w0"], h.State.Run!.Ranks.ToArray());                           // rank 0 holds the most advanced state
        Assert.All(reform, p => Assert.Equal(new StepKey(5, StepPhase.Discriminator, 0), p.Resume!.Position));
        Assert.All(reform, p => Assert.Equal(6 * 10, p.Resume!.SamplesConsumed));   // 6 D updates of a global batch of 10
        // Every update applied exactly once on every survivor: w0 took w1's state, which already held it5/D0.
        Assert.Equal(Sim.Schedule(8, 1), h.Applied["w0"]);
        Assert.Equal(Sim.Schedule(8, 1), h.Applied["w1"]);
    }

    [Fact]
    public void Failures_beyond_the_hourly_retry_budget_end_the_run_with_a_clear_status()
    {
        var h = new Sim();
        h.Workers(4);
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration is 1 or 3 && sim.State.Run!.Ranks.Length == (iteration == 1 ? 4 : 3)) sim.Kill(sim.State.Run.Ranks[^1]);
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration == 2 && !sim.State.Workers.ContainsKey("w9")) sim.Up("w9");
        };
        h.Submit(Sim.Spec(iterations: 6, extra: $", \"batchMode\": \"{mode}\""));
        h.Pump();

        Assert.Equal(RunOutcome.Completed, h.Ended!.Outcome);
        var join = h.Sent<PrepareRun>().Where(p => p.Resume is not null).ToList();
        Assert.Equal(3, join.Count);
        Assert.All(join, p => Assert.Equal(new StepKey(2, StepPhase.Generator, 0), p.Resume!.Position));   // the end of the same iteration
        Assert.Equal(2, h.Sent<YieldSegment>().Count());                           // the segment to iteration 4 ended early, on both ranks
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (iteration == 1 && sim.State.Run!.Ranks.Contains("w1")) sim.Worker(new LeaveRun("w1"));
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
        Assert.All(prepare, p => Assert.Equal(new ResumeFrom(new StepKey(3, StepPhase.Generator, 0), 40, "/runs/t/checkpoints/iter-00000004"), p.Resume));
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
        Assert.Equal(new Stage.Resuming(Located: false, null, 1), h.State.Stage);
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
    public void A_segment_that_times_out_drops_the_silent_worker_and_the_others_go_on()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 3));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        var fx = h.Worker(new RunPrepared(runId, session, 1, "w1", 1));
        var timer = fx.OfType<Effect.Schedule>().Last();
        h.Worker(new SegmentDone(runId, session, 0, new StepKey(1, StepPhase.Generator, 0), 5, null, null, 0, 0, false));
        // Progress from a long segment pushes the deadline back: the timeout measures silence.
        var progress = h.Worker(new SegmentProgress(runId, session, 1, new StepKey(0, StepPhase.Generator, 0)));
        Assert.Empty(h.Feed(new CoordinatorInput.TimerFired(timer.Token, h.Now)));
        timer = progress.OfType<Effect.Schedule>().Single();

        Assert.Empty(h.Feed(new CoordinatorInput.TimerFired(timer.Token - 1, h.Now)));  // an old timer does nothing
        var timedOut = h.Feed(new CoordinatorInput.TimerFired(timer.Token, h.Now));
        Assert.Equal(RunState.Recovering, h.State.Phase);
        Assert.Contains(timedOut.OfType<Effect.Log>(), l => l.Warning && l.Text.Contains("w1 (rank 1) made no progress after the start"));
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
        var runId = h.Submit(Sim.Spec(iterations: 5));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, session, 1, "w1", 1));
        Assert.True(h.Sent<RunSegment>().Last().ReportChecksum);                 // checksumEvery = 2
        var end = new StepKey(1, StepPhase.Generator, 0);
        h.Worker(new SegmentDone(runId, session, 0, end, 5, null, "aaaaaaaaaaaaaaaa", 0, 0, false));
        h.Worker(new SegmentDone(runId, session, 1, end, 5, null, "bbbbbbbbbbbbbbbb", 0, 0, false));
        Assert.Equal(RunState.Failed, h.State.Phase);
        Assert.Contains("replicas diverged by it1/G", h.Ended!.Message);
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
        Assert.Equal(new[] { 4, 3, 3 }, BatchSplit.Even(10, 3));
    }

    [Fact]
    public void Non_finite_updates_are_counted_in_the_metrics_and_a_guard_that_stopped_fails_the_run()
    {
        var h = new Sim();
        h.Workers(2);
        var runId = h.Submit(Sim.Spec(iterations: 50, extra: ", \"maxNonFiniteSkips\": 3"));
        var session = h.Sent<PrepareRun>().First().Formation;
        h.Worker(new RunPrepared(runId, session, 0, "w0", 10));
        h.Worker(new RunPrepared(runId, session, 1, "w1", 10));

        IReadOnlyList<Effect> End(long skipped, long consecutive, bool diverged)
        {
            var last = new StepKey(((Stage.Running)h.State.Stage).Until - 1, StepPhase.Generator, 0);
            var stats = new WindowStats(1, 2, 0.6, 0.4, 2);
            h.Worker(new SegmentDone(runId, session, 0, last, 5, stats, null, skipped, consecutive, diverged));
            return h.Worker(new SegmentDone(runId, session, 1, last, 5, stats, null, skipped, consecutive, diverged));
        }

        var first = End(2, 0, false);
        Assert.Equal(2, Assert.Single(first.OfType<Effect.AppendMetrics>()).Row.Skipped);
        Assert.Contains(first.OfType<Effect.Log>(), l => l.Warning && l.Text.Contains("2 update(s) with non-finite gradients skipped on every worker"));
        Assert.Equal((2L, 0L), (h.State.Run!.SkippedTotal, h.State.Run.ConsecutiveSkips));
        End(2, 2, false);
        Assert.Equal(2, h.State.Run!.ConsecutiveSkips);                          // a re-form would carry it on
        Assert.Equal(RunState.Running, h.State.Phase);
        End(1, 3, true);
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
        h.BeforeIteration = (sim, iteration) =>
        {
            if (ack is null && iteration == 3) ack = Answer(sim.Feed(new CoordinatorInput.Cancel(runId, "ana@laptop", sim.Now)));
        };
        h.Pump();

        Assert.Contains("stops at the next iteration boundary (it was after it1/G)", Assert.IsType<RunProtocol.CancelAck>(ack).Message);
        Assert.All(h.Applied.Values, l => Assert.Equal(Sim.Schedule(4, 2), l));   // iteration 3 finished, nothing of 4 applied
        Assert.Equal(2, h.Sent<YieldSegment>().Count());
        Assert.DoesNotContain(h.Sent<RunSegment>(), r => r.Until > 4);            // no segment after the cancel
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
