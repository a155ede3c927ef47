using GanCluster.Actors.Coordinator;
using GanCluster.Protocol;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Cluster.Tests;

/// <summary>The coordinator's decisions, without actors: workers are simulated by answering its effects.</summary>
public class CoordinatorStateTests
{
    static readonly DateTimeOffset T0 = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);
    static readonly CoordinatorSettings Settings = new(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(10), ChecksumEvery: 2);

    sealed class Harness
    {
        public CoordinatorState State = CoordinatorState.Initial(Settings);
        public readonly List<Effect> All = [];

        public IReadOnlyList<Effect> Feed(CoordinatorInput input)
        {
            var (next, fx) = State.Handle(input);
            State = next;
            All.AddRange(fx);
            return fx;
        }

        public void Workers(int n)
        {
            for (var i = 0; i < n; i++) Feed(new CoordinatorInput.WorkerUp(new WorkerInfo($"w{i}", "cpu", "127.0.0.1", 9000 + i)));
        }

        public IReadOnlyList<Effect> Worker(IGanClusterMessage m) => Feed(new CoordinatorInput.FromWorker(m, T0.AddSeconds(1)));
    }

    static string SpecJson(int k, int iterations, int every = 1000) =>
        $$$"""{"name": "t", "dataset": {"kind": "ring8"}, "model": {"kind": "mlp"}, "training": {"k": {{{k}}}, "iterations": {{{iterations}}}, "batchSize": 10, "logEvery": 2}, "checkpoint": {"every": {{{every}}}, "keep": 1}}""";

    /// <summary>Runs a whole job, answering every effect as well-behaved workers and a working artifact writer would.</summary>
    static Harness RunToEnd(int workers, int k, int iterations, int every = 1000)
    {
        var h = new Harness();
        h.Workers(workers);
        var queue = new Queue<Effect>(h.Feed(new CoordinatorInput.Submit(SpecJson(k, iterations, every), 42, T0)));
        var guard = 0;
        while (queue.Count > 0 && guard++ < 100_000)
        {
            var fx = queue.Dequeue() switch
            {
                Effect.ToWorker { Message: PrepareRun p } => h.Worker(new RunPrepared(p.RunId, p.Rank, $"w{p.Rank}", 100)),
                Effect.ToWorker { Message: ExecuteStep e } w => h.Worker(new StepReduced(e.RunId, e.Step, Rank(w), 5,
                    e.ReportStats ? new WindowStats(1, 2, 0.6, 0.4, 1) : null, e.ReportChecksum ? "abc123abc123abc" : null)),
                Effect.ToWorker { Message: SaveArtifacts s } w when Rank(w) == 0 => h.Feed(new CoordinatorInput.ArtifactsDone(s.Iteration, null)),
                Effect.ToWorker { Message: FinishRun f } w => Finish(h, f, Rank(w), iterations),
                _ => [],
            };
            foreach (var e in fx) queue.Enqueue(e);
        }
        return h;
    }

    static IReadOnlyList<Effect> Finish(Harness h, FinishRun f, int rank, int iterations)
    {
        var fx = h.Worker(new RunFinishedOnWorker(f.RunId, rank, "final-checksum-0123456789")).ToList();
        if (rank == 0) fx.AddRange(h.Feed(new CoordinatorInput.ArtifactsDone(iterations, null)));
        return fx;
    }

    static int Rank(Effect.ToWorker w) => int.Parse(w.WorkerId[1..]);

    [Theory]
    [InlineData(1, "D0 G")]
    [InlineData(3, "D0 D1 D2 G")]
    public void Each_iteration_commits_k_D_updates_then_one_G_update_on_every_worker(int k, string perIteration)
    {
        var h = RunToEnd(workers: 3, k, iterations: 4, every: 2);
        var committed = h.All.OfType<Effect.Committed>().ToList();
        Assert.All(committed, c => Assert.Equal(new[] { 0, 1, 2 }, c.Ranks));
        var log = string.Join(" | ", committed.GroupBy(c => c.Step.Iteration)
            .Select(g => string.Join(' ', g.Select(c => c.Step.Phase == StepPhase.Generator ? "G" : $"D{c.Step.SubStep}"))));
        Assert.Equal(string.Join(" | ", Enumerable.Repeat(perIteration, 4)), log);

        var end = Assert.Single(h.All.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunEnded>());
        Assert.Equal("completed", end.Status);
        Assert.Equal(RunPhase.Idle, h.State.Phase);
        Assert.Equal(2, h.All.OfType<Effect.AppendMetrics>().Count());          // logEvery 2 of 4 iterations
        Assert.Single(h.All.OfType<Effect.ToWorker>().Select(w => w.Message).OfType<SaveArtifacts>().Where(s => s.Iteration == 2).Take(1));
    }

    [Fact]
    public void The_G_update_is_not_sent_before_every_worker_reduced_the_last_D_update()
    {
        var h = new Harness();
        h.Workers(2);
        var runId = ((RunProtocol.SubmitAck)h.Feed(new CoordinatorInput.Submit(SpecJson(2, 3), 1, T0)).OfType<Effect.Respond>().First().Message).RunId;
        h.Worker(new RunPrepared(runId, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, 1, "w1", 1));
        var d0 = new StepKey(0, StepPhase.Discriminator, 0);
        var d1 = new StepKey(0, StepPhase.Discriminator, 1);
        h.Worker(new StepReduced(runId, d0, 0, 5, null, null));
        h.Worker(new StepReduced(runId, d0, 1, 5, null, null));
        Assert.Equal(d1, h.State.Run!.Step);

        var afterOne = h.Worker(new StepReduced(runId, d1, 0, 5, null, null));
        Assert.Empty(afterOne.OfType<Effect.ToWorker>());                      // rank 1 has not reduced D1 yet
        var afterBoth = h.Worker(new StepReduced(runId, d1, 1, 5, null, null));
        var sent = afterBoth.OfType<Effect.ToWorker>().Select(w => (ExecuteStep)w.Message).ToList();
        Assert.Equal(2, sent.Count);
        Assert.All(sent, e => Assert.Equal((new StepKey(0, StepPhase.Generator, 0), d1), (e.Step, e.Commit)));
    }

    [Fact]
    public void Stale_duplicate_and_unknown_step_messages_are_rejected_and_logged()
    {
        var h = new Harness();
        h.Workers(2);
        var runId = ((RunProtocol.SubmitAck)h.Feed(new CoordinatorInput.Submit(SpecJson(1, 3), 1, T0)).OfType<Effect.Respond>().First().Message).RunId;
        h.Worker(new RunPrepared(runId, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, 1, "w1", 1));
        var d0 = new StepKey(0, StepPhase.Discriminator, 0);
        h.Worker(new StepReduced(runId, d0, 0, 5, null, null));

        var before = h.State;
        foreach (var bad in new IGanClusterMessage[]
                 {
                     new StepReduced(runId, d0, 0, 5, null, null),                                    // duplicate
                     new StepReduced(runId, new StepKey(0, StepPhase.Generator, 0), 1, 5, null, null), // not the current step
                     new StepReduced("other-run", d0, 1, 5, null, null),                              // unknown run
                     new RunPrepared(runId, 1, "w1", 1),                                              // wrong phase
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
    public void A_step_that_times_out_fails_the_run_naming_the_worker()
    {
        var h = new Harness();
        h.Workers(2);
        var runId = ((RunProtocol.SubmitAck)h.Feed(new CoordinatorInput.Submit(SpecJson(1, 3), 1, T0)).OfType<Effect.Respond>().First().Message).RunId;
        h.Worker(new RunPrepared(runId, 0, "w0", 1));
        var fx = h.Worker(new RunPrepared(runId, 1, "w1", 1));
        var timer = fx.OfType<Effect.Schedule>().Last();
        h.Worker(new StepReduced(runId, new StepKey(0, StepPhase.Discriminator, 0), 0, 5, null, null));

        Assert.Empty(h.Feed(new CoordinatorInput.TimerFired(timer.Token - 1)));  // an old timer does nothing
        var failed = h.Feed(new CoordinatorInput.TimerFired(timer.Token));
        Assert.Equal(RunPhase.Failed, h.State.Phase);
        var end = failed.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunEnded>().Single();
        Assert.Equal("failed", end.Status);
        Assert.Contains("w1 (rank 1)", end.Message);
        Assert.Contains("it0/D0", end.Message);
        Assert.Equal(2, failed.OfType<Effect.ToWorker>().Count(w => w.Message is StopRun));
    }

    [Fact]
    public void Diverged_replicas_fail_the_run_loudly()
    {
        var h = new Harness();
        h.Workers(2);
        var runId = ((RunProtocol.SubmitAck)h.Feed(new CoordinatorInput.Submit(SpecJson(1, 5), 1, T0)).OfType<Effect.Respond>().First().Message).RunId;
        h.Worker(new RunPrepared(runId, 0, "w0", 1));
        h.Worker(new RunPrepared(runId, 1, "w1", 1));
        var step = new StepKey(0, StepPhase.Discriminator, 0);
        while (!(step.Iteration == 2 && step.Phase == StepPhase.Discriminator))
        {
            h.Worker(new StepReduced(runId, step, 0, 5, null, null));
            h.Worker(new StepReduced(runId, step, 1, 5, null, null));
            step = GanScheduleKeys.Next(step, 1);
        }
        var execute = h.All.OfType<Effect.ToWorker>().Select(w => w.Message).OfType<ExecuteStep>().Last();
        Assert.True(execute.ReportChecksum);                                   // checksumEvery = 2
        h.Worker(new StepReduced(runId, step, 0, 5, null, "aaaaaaaaaaaaaaaa"));
        var fx = h.Worker(new StepReduced(runId, step, 1, 5, null, "bbbbbbbbbbbbbbbb"));
        Assert.Equal(RunPhase.Failed, h.State.Phase);
        Assert.Contains("replicas diverged", fx.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunEnded>().Single().Message);
    }

    [Fact]
    public void An_invalid_spec_is_refused_with_every_reason_and_the_coordinator_stays_idle()
    {
        var h = new Harness();
        h.Workers(1);
        var fx = h.Feed(new CoordinatorInput.Submit("""{"training": {"k": 0, "batchSize": -1}, "model": {"kind": "gan"}}""", 1, T0));
        var nack = Assert.IsType<RunProtocol.SubmitNack>(Assert.Single(fx.OfType<Effect.Respond>()).Message);
        Assert.Contains(nack.Errors, e => e.StartsWith("training.k:"));
        Assert.Contains(nack.Errors, e => e.StartsWith("training.batchSize:"));
        Assert.Contains(nack.Errors, e => e.StartsWith("model.kind:"));
        Assert.Equal(RunPhase.Idle, h.State.Phase);
        Assert.Empty(fx.OfType<Effect.ToWorker>());
    }

    [Fact]
    public void A_run_needs_workers_and_a_busy_cluster_refuses_a_second_run()
    {
        var h = new Harness();
        var none = h.Feed(new CoordinatorInput.Submit(SpecJson(1, 2), 1, T0));
        Assert.Contains("no workers", Assert.IsType<RunProtocol.SubmitNack>(none.OfType<Effect.Respond>().Single().Message).Reason);
        h.Workers(1);
        h.Feed(new CoordinatorInput.Submit(SpecJson(1, 2), 1, T0));
        var busy = h.Feed(new CoordinatorInput.Submit(SpecJson(1, 2), 1, T0));
        Assert.Contains("busy", Assert.IsType<RunProtocol.SubmitNack>(busy.OfType<Effect.Respond>().Single().Message).Reason);
    }

    [Fact]
    public void Losing_a_worker_of_the_run_fails_it_and_global_batches_split_evenly()
    {
        Assert.Equal(new[] { 4, 3, 3 }, CoordinatorState.SplitBatch(10, 3));
        var h = new Harness();
        h.Workers(2);
        h.Feed(new CoordinatorInput.Submit(SpecJson(1, 2), 1, T0));
        var fx = h.Feed(new CoordinatorInput.WorkerDown("w1", "unreachable"));
        Assert.Equal(RunPhase.Failed, h.State.Phase);
        Assert.Contains("w1 (rank 1)", fx.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunEnded>().Single().Message);
    }
}

public class NanGuardStateTests
{
    [Fact]
    public void Non_finite_updates_are_skipped_and_too_many_in_a_row_fail_the_run()
    {
        var state = CoordinatorState.Initial(new CoordinatorSettings(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(10), 0));
        IReadOnlyList<Effect> Feed(CoordinatorInput i)
        {
            var (next, fx) = state.Handle(i);
            state = next;
            return fx;
        }
        var now = DateTimeOffset.UnixEpoch;
        Feed(new CoordinatorInput.WorkerUp(new WorkerInfo("w0", "cpu", "127.0.0.1", 1)));
        Feed(new CoordinatorInput.WorkerUp(new WorkerInfo("w1", "cpu", "127.0.0.1", 2)));
        var ack = (RunProtocol.SubmitAck)Feed(new CoordinatorInput.Submit(
            """{"name": "n", "dataset": {"kind": "ring8"}, "model": {"kind": "mlp"}, "training": {"iterations": 50, "batchSize": 8, "maxNonFiniteSkips": 3}}""", 1, now))
            .OfType<Effect.Respond>().Single().Message;
        Feed(new CoordinatorInput.FromWorker(new WorkerProtocol.RunPrepared(ack.RunId, 0, "w0", 10), now));
        Feed(new CoordinatorInput.FromWorker(new WorkerProtocol.RunPrepared(ack.RunId, 1, "w1", 10), now));

        IReadOnlyList<Effect> Reduce(bool nonFinite)
        {
            var step = state.Run!.Step;
            Feed(new CoordinatorInput.FromWorker(new WorkerProtocol.StepReduced(ack.RunId, step, 0, 4, null, null, nonFinite), now));
            return Feed(new CoordinatorInput.FromWorker(new WorkerProtocol.StepReduced(ack.RunId, step, 1, 4, null, null, nonFinite), now));
        }

        Reduce(true);
        Reduce(true);
        Reduce(false);                                   // a finite update resets the count
        Assert.Equal(0, state.Run!.ConsecutiveSkips);
        Reduce(true);
        Reduce(true);
        Assert.Equal(RunPhase.Running, state.Phase);
        var fx = Reduce(true);
        Assert.Equal(RunPhase.Failed, state.Phase);
        var end = fx.OfType<Effect.Publish>().Select(p => p.Message).OfType<RunProtocol.RunEnded>().Single();
        Assert.Contains("diverged: 3 consecutive updates with non-finite gradients", end.Message);
    }
}
