using System.Security.Cryptography;
using GanCluster.Actors.Coordinator;
using GanCluster.Protocol;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Actors.Worker;

/// <summary>The collective a worker session averages its gradients with (the TCP ring in production).</summary>
public interface IAllReduce : IDisposable
{
    /// <summary>Leaves Σ w_r·x_r / Σ w_r in <paramref name="data"/> on every rank; returns Σ w_r.</summary>
    double WeightedMean(Span<float> data, double weight);
}

/// <summary>
/// One worker's part of a run, without actors: its replica, its shard, the pending (reduced, not yet applied) update.
/// Every call runs on the worker's own thread.
/// </summary>
public sealed class WorkerSession : IDisposable
{
    readonly IAllReduce _reduce;
    readonly SampleSet _data;
    readonly BatchCursor _cursor;
    readonly FlatBuffer _buffers;   // BatchNorm running statistics, averaged before saving
    StepKey? _pending;
    bool _pendingFinite;

    public WorkerSession(RunSpec spec, int rank, int worldSize, int localBatch, Device device, IAllReduce reduce)
    {
        Spec = spec;
        Rank = rank;
        LocalBatch = localBatch;
        Device = device;
        _reduce = reduce;
        var t = spec.Training;

        var loaded = RunData.Load(spec.Dataset, t.Seed);
        _data = device.type == DeviceType.CUDA ? loaded.To(device) : loaded;
        if (!ReferenceEquals(_data, loaded)) loaded.Dispose();
        _cursor = new BatchCursor(new ShardSampler(_data.Count, rank, worldSize, t.Seed));

        // Each rank draws its own noise; the union over ranks is the global batch's noise.
        Replica = new GanReplica(spec, device, noiseSeed: t.Seed + 1_000_003L * rank);
        _buffers = new FlatBuffer(Replica.G.buffers().Concat(Replica.D.buffers()).Where(b => b.is_floating_point()), device);
        BroadcastWeightsFromRankZero();
    }

    public RunSpec Spec { get; }
    public int Rank { get; }
    public int LocalBatch { get; }
    public Device Device { get; }
    public GanReplica Replica { get; }
    public int DatasetSize => _data.Count;
    public BatchCursor Cursor => _cursor;
    /// <summary>Updates applied, in order (the worker's own event log).</summary>
    public List<StepKey> Applied { get; } = [];

    /// <summary>Rank 0's weights everywhere: a weighted mean with weight 1 on rank 0 and 0 elsewhere.</summary>
    void BroadcastWeightsFromRankZero()
    {
        using var g = new FlatBuffer(Replica.G.parameters(), Device);
        using var d = new FlatBuffer(Replica.D.parameters(), Device);
        foreach (var f in new[] { g, d })
        {
            f.GatherValues();
            _reduce.WeightedMean(f.Span, Rank == 0 ? 1 : 0);
            f.ScatterValues();
        }
    }

    /// <summary>Applies the pending update, which must be <paramref name="commit"/>.</summary>
    public void Commit(StepKey commit)
    {
        if (_pending != commit)
            throw new InvalidOperationException($"asked to apply {commit} but the reduced update here is {(_pending?.ToString() ?? "none")}");
        _pending = null;
        if (!_pendingFinite)
        {
            Skipped.Add(commit);   // NaN guard: the same decision on every replica, since all hold the same average
            return;
        }
        Replica.SetIteration(commit.Iteration);
        if (commit.Phase == StepPhase.Discriminator)
        {
            Replica.DGrads.ScatterGrads();
            Replica.ApplyDiscriminator();
        }
        else
        {
            Replica.GGrads.ScatterGrads();
            Replica.ApplyGenerator();
        }
        Applied.Add(commit);
    }

    /// <summary>Updates skipped because their averaged gradients were not finite.</summary>
    public List<StepKey> Skipped { get; } = [];

    /// <summary>
    /// Computes this rank's gradients for <paramref name="step"/> and averages them over all ranks (weighted by batch).
    /// Returns false when the average holds a NaN or inf: that update will be skipped on every replica.
    /// </summary>
    public bool ComputeAndReduce(StepKey step)
    {
        if (_pending is not null) throw new InvalidOperationException($"{_pending} was reduced but never applied or dropped");
        using var scope = NewDisposeScope();
        FlatBuffer grads;
        if (step.Phase == StepPhase.Discriminator)
        {
            // D update: this rank's slice of a fresh real minibatch [b, ...] and fresh noise.
            var real = _data.Batch(_cursor.Next(LocalBatch), Device);
            Replica.ComputeDiscriminatorGradients(real, last: step.SubStep == Spec.Training.K - 1);
            grads = Replica.DGrads;
        }
        else
        {
            Replica.ComputeGeneratorGradients(LocalBatch);
            grads = Replica.GGrads;
        }
        grads.GatherGrads();
        _reduce.WeightedMean(grads.Span, LocalBatch);
        _pending = step;
        _pendingFinite = grads.AllFinite();
        return _pendingFinite;
    }

    /// <summary>Drops a reduced update that will never be committed.</summary>
    public void Drop() => _pending = null;

    /// <summary>BatchNorm running statistics averaged over replicas, so every replica saves and samples the same model.</summary>
    public void SyncBuffers()
    {
        if (_buffers.Length == 0) return;
        _buffers.GatherValues();
        _reduce.WeightedMean(_buffers.Span, 1);
        _buffers.ScatterValues();
    }

    /// <summary>
    /// SHA-256 of G's and D's parameters, identical on every replica. BatchNorm running statistics are per worker
    /// during training (as DDP), so they count only with <paramref name="withBuffers"/>, after <see cref="SyncBuffers"/>.
    /// </summary>
    public string Checksum(bool withBuffers = false)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var m in new nn.Module[] { Replica.G, Replica.D })
        {
            var tensors = m.parameters().Cast<Tensor>();
            if (withBuffers) tensors = tensors.Concat(m.buffers().Where(b => b.is_floating_point()));
            using var flat = new FlatBuffer(tensors, Device);
            flat.GatherValues();
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(flat.Span));
        }
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>Writes samples (and a checkpoint) of the current model under <paramref name="folder"/>; returns relative paths.</summary>
    public IReadOnlyList<string> WriteArtifacts(string folder, long iteration, bool checkpoint)
    {
        using var fixedNoise = RunArtifacts.FixedNoise(Replica, Spec.Training.Seed);
        var files = RunArtifacts.WriteSamples(Replica, fixedNoise, folder, iteration).Files.ToList();
        if (checkpoint)
        {
            var dir = RunArtifacts.SaveCheckpoint(folder, Replica, iteration, _cursor, keep: 1);
            files.AddRange(Directory.GetFiles(dir).Select(f => Path.GetRelativePath(folder, f).Replace('\\', '/')));
        }
        return files;
    }

    public void Dispose()
    {
        _buffers.Dispose();
        Replica.Dispose();
        _data.Dispose();
        _reduce.Dispose();
    }
}
