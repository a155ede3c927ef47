using System.Runtime.InteropServices;
using System.Security.Cryptography;
using GanCluster.Actors.Coordinator;
using GanCluster.Protocol;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using TorchSharp;
using static TorchSharp.torch;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Worker;

/// <summary>The collective a worker session averages its gradients with (the TCP ring in production).</summary>
public interface IAllReduce : IDisposable
{
    /// <summary>Leaves Σ w_r·x_r / Σ w_r in <paramref name="data"/> on every rank; returns Σ w_r.</summary>
    double WeightedMean(Span<float> data, double weight);

    /// <summary>Leaves rank 0's <paramref name="data"/> (its exact bits) on every rank; every rank passes the same length.</summary>
    void Broadcast(Span<float> data);
}

/// <summary>One save of rank 0, held in memory until uploaded: paths relative to the run's output folder.</summary>
/// <param name="Render">Encodes the samples (PNG, CSV): run off the training thread, before uploading.</param>
public sealed record ArtifactBundle(long Iteration, bool Checkpoint, IReadOnlyList<(string Path, byte[] Bytes)> Files,
    Func<IEnumerable<(string Path, byte[] Bytes)>> Render);

/// <summary>
/// One worker's part of a run, without actors: its replica, its shard, the pending (reduced, not yet applied) update.
/// A session outlives formations: when workers join or leave, <see cref="Form"/> gives it a new rank, shard and ring
/// while it keeps its replica. Every call runs on the worker's own thread.
/// </summary>
public sealed class WorkerSession : IDisposable
{
    IAllReduce? _reduce;
    readonly DeviceData _data;
    BatchCursor _cursor = null!;
    StepKey? _pending;
    bool _pendingFinite;

    /// <summary>Loads the data and builds the replica; <see cref="Form"/> then joins it to a ring.</summary>
    public WorkerSession(string runId, RunSpec spec, Device device)
    {
        RunId = runId;
        Spec = spec;
        Device = device;
        _data = DeviceData.Place(RunData.Load(spec.Dataset, spec.Training.Seed), device, spec.Dataset.Placement);
        Replica = new GanReplica(spec, device, noiseSeed: spec.Training.Seed);
    }

    /// <summary>Where the data lives (for the worker's log).</summary>
    public string DataDescription => _data.Description;

    /// <summary>A session of a fresh run at <paramref name="rank"/> (the one-formation case).</summary>
    public WorkerSession(RunSpec spec, int rank, int worldSize, int localBatch, Device device, IAllReduce reduce)
        : this("run", spec, device) => Form(rank, worldSize, localBatch, reduce, resume: null);

    public string RunId { get; }
    public RunSpec Spec { get; }
    public int Rank { get; private set; }
    public int WorldSize { get; private set; }
    public int LocalBatch { get; private set; }
    public Device Device { get; }
    public GanReplica Replica { get; }
    public int DatasetSize => _data.Count;
    public BatchCursor Cursor => _cursor;
    /// <summary>Updates applied, in order (the worker's own event log).</summary>
    public List<StepKey> Applied { get; } = [];
    /// <summary>The last update applied or skipped here (null: none yet); after <see cref="Form"/>, the formation's position.</summary>
    public StepKey? LastCommitted { get; private set; }

    /// <summary>
    /// Joins a formation: a new rank, world size, batch, shard position and ring. A fresh run (<paramref name="resume"/>
    /// null) takes rank 0's initial weights. Otherwise pending work is applied (<see cref="ResumeFrom.ApplyPosition"/>)
    /// or dropped, rank 0 loads the checkpoint if one is named, and rank 0's whole state goes to every rank.
    /// </summary>
    public void Form(int rank, int worldSize, int localBatch, IAllReduce reduce, ResumeFrom? resume)
    {
        if (resume is { ApplyPosition: true } && _pending is not null && _pending == resume.Position) Commit(resume.Position);
        _pending = null;
        _reduce?.Dispose();
        _reduce = reduce;
        (Rank, WorldSize, LocalBatch) = (rank, worldSize, localBatch);
        var t = Spec.Training;
        var sampler = new ShardSampler(_data.Count, rank, worldSize, t.Seed);
        // Each rank draws its own noise; the union over ranks is the global batch's noise.
        var noiseSeed = t.Seed + 1_000_003L * rank;
        if (resume is null)
        {
            _cursor = new BatchCursor(sampler);
            Replica.ReseedNoise(noiseSeed);
            BroadcastWeightsFromRankZero();
            LastCommitted = null;
            return;
        }

        // The data position of the whole cluster, re-dealt over this world: exact when the world has not changed.
        var epochSamples = (long)sampler.ShardSize * worldSize;
        _cursor = new BatchCursor(sampler, resume.SamplesConsumed / epochSamples, (int)(resume.SamplesConsumed % epochSamples / worldSize));
        if (resume.Checkpoint is not null && rank == 0)
        {
            var problem = CheckpointStore.Verify(resume.Checkpoint);
            if (problem is not null) throw new InvalidDataException($"checkpoint {resume.Checkpoint}: {problem}");
            CheckpointStore.Restore(resume.Checkpoint, Replica, CheckpointStore.ReadState(resume.Checkpoint));
        }
        var blob = BroadcastBytes(rank == 0 ? Replica.SaveState() : null);
        if (rank != 0) Replica.LoadState(blob);
        var position = resume.Position is null ? 0 : resume.Position.Iteration * 2 + (resume.Position.Phase == StepPhase.Generator ? 1 : 0);
        Replica.ReseedNoise(DeterministicRandom.Mix(noiseSeed, position));
        LastCommitted = resume.Position;
    }

    /// <summary>Rank 0's weights everywhere.</summary>
    void BroadcastWeightsFromRankZero()
    {
        using var g = new FlatBuffer(Replica.FlatG);
        using var d = new FlatBuffer(Replica.FlatD);
        foreach (var f in new[] { g, d })
        {
            f.GatherValues();
            _reduce!.Broadcast(f.Span);
            f.ScatterValues();
        }
    }

    /// <summary>Rank 0's bytes on every rank: its length, then the bytes themselves as the bits of floats (a broadcast adds nothing).</summary>
    byte[] BroadcastBytes(byte[]? data)
    {
        var length = new[] { BitConverter.Int32BitsToSingle(data?.Length ?? 0) };
        _reduce!.Broadcast(length);
        var n = BitConverter.SingleToInt32Bits(length[0]);
        var packed = new float[(n + 3) / 4];
        if (data is not null) data.CopyTo(MemoryMarshal.AsBytes(packed.AsSpan()));
        _reduce.Broadcast(packed);
        return data ?? MemoryMarshal.AsBytes(packed.AsSpan())[..n].ToArray();
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
            LastCommitted = commit;
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
        LastCommitted = commit;
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
            var real = _data.Batch(_cursor, LocalBatch);
            Replica.ComputeDiscriminatorGradients(real, last: step.SubStep == Spec.Training.K - 1);
            grads = Replica.DGrads;
        }
        else
        {
            Replica.ComputeGeneratorGradients(LocalBatch);
            grads = Replica.GGrads;
        }
        grads.GatherGrads();
        _reduce!.WeightedMean(grads.Span, LocalBatch);
        _pending = step;
        _pendingFinite = grads.AllFinite();
        return _pendingFinite;
    }

    /// <summary>Drops a reduced update that will never be committed, and the ring (a new formation brings its own).</summary>
    public void Abort()
    {
        _pending = null;
        _reduce?.Dispose();
        _reduce = null;
    }

    /// <summary>BatchNorm running statistics averaged over replicas, so every replica saves and samples the same model.</summary>
    public void SyncBuffers()
    {
        var buffers = Replica.Buffers;
        if (buffers.Length == 0) return;
        buffers.GatherValues();
        _reduce!.WeightedMean(buffers.Span, 1);
        buffers.ScatterValues();
    }

    /// <summary>
    /// SHA-256 of G's and D's parameters, identical on every replica. BatchNorm running statistics are per worker
    /// during training (as DDP), so they count only with <paramref name="withBuffers"/>, after <see cref="SyncBuffers"/>.
    /// </summary>
    public string Checksum(bool withBuffers = false) => Replica.Checksum(withBuffers);

    /// <summary>
    /// Samples (and a checkpoint holding <paramref name="coordinatorJson"/>) of the current model, serialized in memory:
    /// the only part of a save that training waits for. Paths are relative to the run's output folder.
    /// </summary>
    public ArtifactBundle Snapshot(long iteration, bool checkpoint, string coordinatorJson)
    {
        var files = new List<(string, byte[])>();
        // G's samples from the fixed noise, copied to the host; PNG/CSV encoding happens in the background (Render).
        Tensor fake;
        using (var scope = NewDisposeScope())
        {
            using var fixedNoise = RunArtifacts.FixedNoise(Replica, Spec.Training.Seed);
            fake = Replica.Generate(fixedNoise).cpu().clone().DetachFromDisposeScope();
        }
        var (isImage, kind) = (Replica.IsImage, Spec.Dataset.Kind);
        IEnumerable<(string, byte[])> Render()
        {
            using (fake) return RunArtifacts.EncodeSamples(fake, isImage, kind, iteration).Files;
        }
        if (checkpoint)
        {
            var extra = new Dictionary<string, byte[]> { ["coordinator.json"] = System.Text.Encoding.UTF8.GetBytes(coordinatorJson) };
            var snap = CheckpointStore.Snapshot(Replica, RunArtifacts.StateOf(Replica, iteration, _cursor), extra);
            var folder = "checkpoints/" + Path.GetFileName(CheckpointStore.PathOf("", iteration));
            foreach (var (name, bytes) in snap.Files) files.Add(($"{folder}/{name}", bytes));
            files.Add(($"{folder}/manifest.json", CheckpointStore.Manifest(snap)));
        }
        return new ArtifactBundle(iteration, checkpoint, files, Render);
    }

    public void Dispose()
    {
        Replica.Dispose();
        _data.Dispose();
        _reduce?.Dispose();
    }
}
