using GanCluster.DataPlane;
using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Data;
using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Cluster.Tests;

/// <summary>W workers with batches b_r give the parameters of one worker with batch Σ b_r on the union of their data.</summary>
public class EquivalenceTests
{
    public EquivalenceTests() => TorchSetup.Ensure();

    [Theory]
    [InlineData(2, 64, 3000, false)]   // 2 workers, B/2 each
    [InlineData(3, 64, 3001, false)]   // 3 workers: local batches 22, 21, 21 and shards padded to equal size
    [InlineData(2, 64, 3000, true)]    // the same through the TCP ring on 127.0.0.1
    [InlineData(3, 64, 3001, true)]
    public void Workers_match_one_big_batch_process(int workers, int batch, int datasetSize, bool tcpRing)
    {
        const int iterations = 8;
        const int k = 3;
        var spec = Specs.Ring8(batch, iterations, k) with { Dataset = new() { Kind = "ring8", Size = datasetSize } };
        var batches = BatchSplit.Even(batch, workers);
        var reducers = tcpRing ? Rings(workers) : InProcessCollective.Create(workers);
        var applied = new List<StepKey>[workers];

        // The cluster: one thread per worker (TorchSharp state is per thread), each with its own session.
        var finals = new float[workers][];
        var threads = Enumerable.Range(0, workers).Select(rank => new Thread(() =>
        {
            var log = new List<StepKey>();
            using var session = new ReplicaSession("run", spec, CPU) { OnUpdate = log.Add };
            session.Sync(rank, workers, batches[rank], reducers[rank], resume: null);
            for (var it = 0; it < iterations; it++) session.RunIteration(it);
            finals[rank] = Parameters(session.Replica);
            applied[rank] = log;
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        // The reference: one replica with the whole batch, fed the union of the workers' data and noise.
        random.manual_seed(spec.Training.Seed);
        using var reference = new GanReplica(spec, CPU, noiseSeed: 0);
        using var data = RunData.Load(spec.Dataset, spec.Training.Seed);
        var cursors = Enumerable.Range(0, workers).Select(r => new BatchCursor(new ShardSampler(data.Count, r, workers, spec.Training.Seed))).ToArray();
        var noises = Enumerable.Range(0, workers).Select(r => new Generator((ulong)(spec.Training.Seed + 1_000_003L * r))).ToArray();
        foreach (var step in Steps(spec.Training.K, iterations))
        {
            using var scope = NewDisposeScope();
            reference.SetIteration(step.Iteration);
            if (step.Phase == StepPhase.Discriminator)
            {
                var noise = cat(Enumerable.Range(0, workers).Select(r => reference.SampleNoise(batches[r], noises[r])).ToList(), 0);
                var real = cat(Enumerable.Range(0, workers).Select(r => data.Batch(cursors[r].Next(batches[r]), CPU)).ToList(), 0);
                reference.ComputeDiscriminatorGradients(real, step.SubStep == spec.Training.K - 1, noise);
                reference.ApplyDiscriminator();
            }
            else
            {
                reference.ComputeGeneratorGradients(batch);   // gNoise = reuse: the last D sub-step's fake batch
                reference.ApplyGenerator();
            }
        }
        var expected = Parameters(reference);

        // Each worker's own log of applied updates: D D D G per iteration.
        var perIteration = string.Join(' ', Enumerable.Repeat("D D D G", iterations));
        Assert.All(applied, a => Assert.Equal(perIteration, string.Join(' ', a.Select(s => s.Phase == StepPhase.Generator ? "G" : "D"))));

        for (var r = 0; r < workers; r++)
        {
            Assert.Equal(finals[0], finals[r]);                // replicas identical, bit for bit
            // ‖θ_cluster − θ_local‖ / ‖θ_local‖: float summation order differs, nothing else may.
            var diff = Math.Sqrt(expected.Zip(finals[r]).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)));
            var norm = Math.Sqrt(expected.Sum(v => (double)v * v));
            Assert.True(diff / norm <= 1e-5, $"rank {r}: relative difference {diff / norm:E2}");
        }
        Assert.NotEqual(InitialParameters(spec), expected);  // training did move the weights
        foreach (var g in noises) g.Dispose();
    }

    /// <summary>Each worker's final parameters after <paramref name="iterations"/> of <paramref name="spec"/>, one thread per rank.</summary>
    static float[][] TrainWorkers(GanCluster.Training.Spec.RunSpec spec, int iterations, IReadOnlyList<ICollective> reducers)
    {
        var workers = reducers.Count;
        var batches = BatchSplit.Even(spec.Training.BatchSize, workers);
        var finals = new float[workers][];
        var threads = Enumerable.Range(0, workers).Select(rank => new Thread(() =>
        {
            using var session = new ReplicaSession("run", spec, CPU);
            session.Sync(rank, workers, batches[rank], reducers[rank], resume: null);
            for (var it = 0; it < iterations; it++) session.RunIteration(it);
            finals[rank] = Parameters(session.Replica);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        foreach (var c in reducers) c.Dispose();
        return finals;
    }

    /// <summary>Asserts the runs' replicas are bit-identical, and end near <paramref name="reference"/>'s, but not on it.</summary>
    static void AssertIdenticalAndNear(float[][] runs, float[] reference, GanCluster.Training.Spec.RunSpec spec, double share, string what)
    {
        for (var r = 1; r < runs.Length; r++)
            Assert.Equal(runs[0], runs[r]);
        var diff = Math.Sqrt(reference.Zip(runs[0]).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)));
        var moved = Math.Sqrt(reference.Zip(InitialParameters(spec)).Sum(p => (double)(p.First - p.Second) * (p.First - p.Second)));
        Assert.True(diff > 0, $"{what} gave the fp32 run's parameters exactly: was anything rounded?");
        // Adam normalises each gradient, so 2^-8 relative errors move the weights by a small fraction of how far
        // training moved them (not a bound that holds for long runs: GAN training amplifies differences over time).
        Assert.True(diff <= share * moved, $"{what} moved the weights {diff:E2} from the fp32 run's; training moved them {moved:E2}");
    }

    /// <summary>
    /// training.wirePrecision bf16: the workers' replicas stay bit-identical (every rank applies the same rounded
    /// mean), and the run stays near the fp32 ring's, which it does not equal (the gradients did go as bf16).
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Workers_on_a_bf16_ring_stay_identical_and_near_the_fp32_ring(int workers)
    {
        const int iterations = 8;
        var spec = Specs.Ring8(48, iterations, k: 1);
        var fp32 = TrainWorkers(spec, iterations, Rings(workers, RingWire.Fp32));
        var bf16 = TrainWorkers(spec, iterations, Rings(workers, RingWire.Bf16));
        AssertIdenticalAndNear(bf16, fp32[0], spec, 0.05, "the bf16 ring");
    }

    /// <summary>
    /// training.precision bf16 in a cluster: each worker computes its share in bf16 and the fp32 gradients it averages
    /// are the same on every rank, so the replicas stay bit-identical, and near an fp32 cluster's.
    /// </summary>
    [Fact]
    public void Workers_computing_in_bf16_stay_identical_and_near_fp32_workers()
    {
        const int iterations = 8;
        var spec = Specs.Ring8(48, iterations, k: 1);
        var fp32 = TrainWorkers(spec, iterations, InProcessCollective.Create(2));
        var bf16 = TrainWorkers(spec with { Training = spec.Training with { Precision = "bf16" } }, iterations, InProcessCollective.Create(2));
        AssertIdenticalAndNear(bf16, fp32[0], spec, 0.1, "bf16 workers");
    }

    /// <summary>Real TCP rings among threads of this process (each rank connects in parallel, as separate workers would).</summary>
    [Fact]
    public void A_re_formed_ring_gives_a_newcomer_rank_0s_weights_and_optimizer_states_and_all_go_on_identical()
    {
        // Two workers train 3 iterations; a third joins at the boundary (ring of 3); all train 3 more.
        var spec = Specs.Ring8(48, 6, k: 2);
        var first = InProcessCollective.Create(2);
        var second = InProcessCollective.Create(3);
        var boundary = new StepKey(2, StepPhase.Generator, 0);
        var finals = new float[3][];
        var applied = new List<StepKey>[3];
        using var barrier = new Barrier(3);
        var threads = Enumerable.Range(0, 3).Select(id => new Thread(() =>
        {
            var log = new List<StepKey>();
            using var session = new ReplicaSession("run", spec, CPU) { OnUpdate = log.Add };
            if (id < 2)
            {
                session.Sync(id, 2, 24, first[id], resume: null);
                for (var it = 0; it < 3; it++) session.RunIteration(it);
            }
            barrier.SignalAndWait(TimeSpan.FromMinutes(1));
            // Newcomer (id 2) gets rank 2, never 0: rank 0 holds the state everyone takes.
            session.Sync(id, 3, 16, second[id], new WorkerProtocol.ResumeFrom(boundary, SamplesConsumed: 3 * 2 * 48, null));
            Assert.Equal(boundary, session.LastApplied);
            for (var it = 3; it < 6; it++) session.RunIteration(it);
            finals[id] = Parameters(session.Replica);
            applied[id] = log;
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        // Adam's moments and step counts came along: otherwise the newcomer's next steps would differ.
        Assert.Equal(finals[0], finals[1]);
        Assert.Equal(finals[0], finals[2]);
        Assert.Equal(Steps(2, 6).Count(), applied[0].Count);
        Assert.Equal(Steps(2, 6).Count(s => s.Iteration >= 3), applied[2].Count);
    }

    static ICollective[] Rings(int n, RingWire wire = RingWire.Fp32)
    {
        var listeners = Enumerable.Range(0, n).Select(_ => RingListener.Start(System.Net.IPAddress.Loopback)).ToArray();
        var peers = listeners.Select((l, r) => new RingPeer(r, "127.0.0.1", l.Port)).ToList();
        var connects = Enumerable.Range(0, n)
            .Select(r => Task.Run(() => RingAllReduce.Connect(listeners[r], 77, r, peers, TimeSpan.FromSeconds(30), wire: wire)))
            .ToArray();
        Task.WaitAll(connects);
        return connects.Select((t, r) => (ICollective)new ListenerOwningRing(t.Result, listeners[r])).ToArray();
    }

    sealed class ListenerOwningRing(RingAllReduce ring, IDisposable listener) : ICollective
    {
        public int Rank => ring.Rank;
        public int WorldSize => ring.WorldSize;
        public ReduceOutcome AllReduceMean(Span<float> data, double weight, long tag = 0, int flags = 0) => ring.AllReduceMean(data, weight, tag, flags);
        public void Broadcast(Span<float> data) => ring.Broadcast(data);
        public double[] AllGather(double value) => ring.AllGather(value);
        public void Dispose()
        {
            ring.Dispose();
            listener.Dispose();
        }
    }

    static IEnumerable<StepKey> Steps(int k, int iterations)
    {
        var s = GanSchedule.First;
        while (s.Iteration < iterations)
        {
            yield return s;
            s = GanSchedule.Next(s, k);
        }
    }

    static float[] Parameters(GanReplica r) =>
        r.G.parameters().Concat(r.D.parameters()).SelectMany(p => p.detach().cpu().data<float>().ToArray()).ToArray();

    static float[] InitialParameters(GanCluster.Training.Spec.RunSpec spec)
    {
        random.manual_seed(spec.Training.Seed);
        using var fresh = new GanReplica(spec, CPU, 0);
        return Parameters(fresh);
    }
}

public class WorkerNanGuardTests
{
    public WorkerNanGuardTests() => TorchSetup.Ensure();

    /// <summary>Poisons the average of one all-reduce call, as a NaN in any worker's gradients would.</summary>
    sealed class Poisoning(ICollective inner, int poisonCall) : ICollective
    {
        int _calls;
        public int Rank => inner.Rank;
        public int WorldSize => inner.WorldSize;
        public ReduceOutcome AllReduceMean(Span<float> data, double weight, long tag = 0, int flags = 0)
        {
            var outcome = inner.AllReduceMean(data, weight, tag, flags);
            if (++_calls == poisonCall) data[0] = float.NaN;
            return outcome;
        }
        public void Broadcast(Span<float> data) => inner.Broadcast(data);
        public double[] AllGather(double value) => inner.AllGather(value);
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void A_non_finite_average_is_skipped_by_every_replica_and_they_stay_identical()
    {
        var spec = Specs.Ring8(batch: 32, iterations: 4);
        var group = InProcessCollective.Create(2);
        var results = new (float[] Params, long Skipped, long[] StepCounts)[2];
        var threads = Enumerable.Range(0, 2).Select(rank => new Thread(() =>
        {
            // Broadcasts (G and D when forming) are not all-reduces: call 3 is the third update (it1/D0).
            using var session = new ReplicaSession("run", spec, CPU);
            session.Sync(rank, 2, 16, new Poisoning(group[rank], 3), resume: null);
            for (var it = 0; it < 4; it++) session.RunIteration(it);
            var (skipped, _) = session.Mark();
            results[rank] = (session.Replica.G.parameters().Concat(session.Replica.D.parameters()).SelectMany(p => p.data<float>().ToArray()).ToArray(),
                skipped, [session.Replica.FlatD.StepCount, session.Replica.FlatG.StepCount]);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        foreach (var r in results)
        {
            Assert.Equal(1, r.Skipped);
            Assert.Equal(new long[] { 3, 4 }, r.StepCounts);   // it1/D0 was not applied; every G update was
            Assert.All(r.Params, v => Assert.True(float.IsFinite(v)));
        }
        Assert.Equal(results[0].Params, results[1].Params);
    }
}
