using GanCluster.Engine;
using GanCluster.Protocol;

namespace GanCluster.Cluster.Tests;

/// <summary>The engine's small policies, which the local trainer and the coordinator share.</summary>
public class PolicyTests
{
    [Fact]
    public void The_cadence_ends_segments_at_every_log_line_save_and_the_end_and_says_what_each_save_holds()
    {
        var c = new Cadence(Iterations: 240, LogEvery: 40, SampleEvery: 60, CheckpointEvery: 100);
        var boundaries = new List<long>();
        for (long done = 0; done < c.Iterations; done = c.NextBoundary(done)) boundaries.Add(c.NextBoundary(done));
        Assert.Equal([40, 60, 80, 100, 120, 160, 180, 200, 240], boundaries);
        Assert.Null(c.SaveAt(40));                                            // a log line only
        Assert.Equal(new SaveDecision(Samples: true, Checkpoint: false), c.SaveAt(60));
        Assert.Equal(new SaveDecision(Samples: false, Checkpoint: true), c.SaveAt(100));
        Assert.Equal(new SaveDecision(Samples: true, Checkpoint: true), c.SaveAt(240));   // the end saves everything
        Assert.True(c.IsLog(240));
    }

    static readonly StepKey It3G = new(3, StepPhase.Generator, 0);
    static readonly StepKey It4D0 = new(4, StepPhase.Discriminator, 0);

    [Fact]
    public void After_a_loss_the_most_advanced_survivors_hold_the_state_everyone_goes_on_from()
    {
        // k = 1, global batch 10: one survivor's all-reduce of it4/D0 completed, the other's did not.
        var split = FailurePolicy.AfterLoss([("a", It3G), ("b", It4D0)], It3G, samplesAtCommitted: 40, globalBatch: 10, k: 1);
        Assert.Equal(new FailureDecision.Reform(["b"], It4D0, 50), split, new ReformComparer());

        var even = Assert.IsType<FailureDecision.Reform>(FailurePolicy.AfterLoss([("a", It3G), ("b", It3G)], It3G, 40, 10, 1));
        Assert.Equal(["a", "b"], even.Holders);
        Assert.Equal((It3G, 40L), (even.Position, even.SamplesConsumed));
    }

    [Fact]
    public void Without_a_survivor_that_holds_the_state_the_run_resumes_from_its_checkpoint_or_starts_over_if_it_had_none()
    {
        Assert.IsType<FailureDecision.Resume>(FailurePolicy.AfterLoss([], It3G, 40, 10, 1));
        // A replica behind the last boundary (it was not part of it) cannot give its state.
        Assert.IsType<FailureDecision.Resume>(FailurePolicy.AfterLoss([("late", new StepKey(1, StepPhase.Generator, 0))], It3G, 40, 10, 1));
        var fresh = Assert.IsType<FailureDecision.Reform>(FailurePolicy.AfterLoss([], null, 0, 10, 1));
        Assert.Equal((0, (StepKey?)null, 0L), (fresh.Holders.Count, fresh.Position, fresh.SamplesConsumed));
    }

    [Fact]
    public void The_failure_budget_counts_the_last_hour_only()
    {
        var now = Sim.T0;
        var old = new[] { now.AddHours(-2), now.AddMinutes(-30) };
        var (recent, spent) = FailureBudget.Count(old, now, maxPerHour: 2);
        Assert.Equal([now.AddMinutes(-30), now], recent);
        Assert.False(spent);
        Assert.True(FailureBudget.Count(recent, now.AddMinutes(1), maxPerHour: 2).Spent);
    }

    [Fact]
    public void The_global_batch_is_dealt_evenly_with_the_remainder_to_the_lowest_ranks_or_fixed_per_worker()
    {
        Assert.Equal([4, 3, 3], BatchSplit.Even(10, 3));
        var global = new GanCluster.Training.Spec.TrainingSpec { BatchSize = 10 };
        Assert.Equal([5, 5], BatchSplit.For(global, perWorkerBatch: 7, workers: 2));
        Assert.Equal([7, 7, 7], BatchSplit.For(global with { BatchMode = "per-worker" }, perWorkerBatch: 7, workers: 3));
    }

    sealed class ReformComparer : IEqualityComparer<FailureDecision>
    {
        public bool Equals(FailureDecision? x, FailureDecision? y) =>
            x is FailureDecision.Reform a && y is FailureDecision.Reform b && a.Holders.SequenceEqual(b.Holders) && a.Position == b.Position
            && a.SamplesConsumed == b.SamplesConsumed;

        public int GetHashCode(FailureDecision obj) => 0;
    }
}
