using System.Runtime.InteropServices;
using GanCluster.DataPlane;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Engine;

/// <summary>One save of rank 0, held in memory until uploaded: paths relative to the run's output folder.</summary>
/// <param name="Render">Encodes the samples (PNG, CSV): run off the training thread, before uploading.</param>
public sealed record ArtifactBundle(long Iteration, bool Checkpoint, IReadOnlyList<(string Path, byte[] Bytes)> Files,
    Func<IEnumerable<(string Path, byte[] Bytes)>> Render);

/// <summary>What one iteration ended with, the same on every rank of a formation.</summary>
/// <param name="GroupYield">Some rank asked the formation to stop after this iteration (the OR of the G update's flags).</param>
public readonly record struct IterationOutcome(bool GroupYield);

/// <summary>
/// One replica's part of a run, with no actors: its model, its shard, and the collective it averages with. Local
/// training is this with a world of one; a cluster worker is this at its rank. The names follow Horovod's elastic
/// <c>State</c>: <see cref="Sync"/> gives every rank of a new formation rank 0's state; <see cref="RunIteration"/>
/// computes, all-reduces and applies each update of an iteration as soon as its average is complete (every rank holds
/// the same average, so every rank applies or skips it alike and no rank ever applies a partial one).
/// Every call runs on the owner's thread (TorchSharp's dispose scopes are thread-static).
/// </summary>
public sealed class ReplicaSession : IDisposable
{
    /// <summary>Flag bit of an update's all-reduce: this rank asks the formation to stop after the current iteration.</summary>
    public const int YieldFlag = 1;

    ICollective? _collective;
    readonly DeviceData _data;
    BatchCursor _cursor = null!;
    NonFiniteGuard? _guard;
    GuardCounts _countsAtMark;

    /// <summary>Loads the data and builds the replica; <see cref="Sync"/> then joins it to a formation.</summary>
    public ReplicaSession(string runId, RunSpec spec, Device device, bool? guardOnDevice = null)
    {
        RunId = runId;
        Spec = spec;
        Device = device;
        GuardOnDevice = guardOnDevice;
        _data = DeviceData.Place(RunData.Load(spec.Dataset, spec.Training.Seed), device, spec.Dataset.Placement);
        Replica = new GanReplica(spec, device, noiseSeed: spec.Training.Seed);
    }

    public string RunId { get; }
    public RunSpec Spec { get; }
    public Device Device { get; }
    public GanReplica Replica { get; }
    public int Rank { get; private set; }
    public int WorldSize { get; private set; }
    public int LocalBatch { get; private set; }
    public int DatasetSize => _data.Count;
    /// <summary>Where the data lives and how it was loaded (for logs).</summary>
    public string DataDescription => _data.Description;
    public string DataSource => _data.Source;
    public long[] SampleShape => _data.SampleShape;
    public BatchCursor Cursor => _cursor;
    /// <summary>The last update applied or skipped here (null: none yet); after <see cref="Sync"/>, the formation's position.</summary>
    public StepKey? LastApplied { get; private set; }
    /// <summary>Where the NaN guard decides at a world of one (null: on a GPU's device, on the CPU's host); tests force the device path on the CPU.</summary>
    public bool? GuardOnDevice { get; }
    /// <summary>Called after each update is applied or skipped, in order (tests check the schedule through it).</summary>
    public Action<StepKey>? OnUpdate { get; init; }

    /// <summary>
    /// Joins a formation: a new rank, world size, batch, shard position and collective. A fresh run (<paramref name="resume"/>
    /// null) takes rank 0's initial weights. Otherwise rank 0 loads the checkpoint if one is named, and rank 0's whole
    /// state (weights, BatchNorm statistics, optimizer states) goes to every rank; the NaN guard goes on counting from
    /// the run's non-finite updates in a row (<see cref="ResumeFrom.ConsecutiveSkips"/>), the same on every rank.
    /// </summary>
    public void Sync(int rank, int worldSize, int localBatch, ICollective collective, ResumeFrom? resume)
    {
        _collective?.Dispose();
        _collective = collective;
        (Rank, WorldSize, LocalBatch) = (rank, worldSize, localBatch);
        var t = Spec.Training;
        // At a world of one on a GPU the guard stays on the device (no host sync per update); with peers the average
        // is on the host anyway, so it decides there.
        _guard?.Dispose();
        _guard = new NonFiniteGuard(t.MaxNonFiniteSkips, Device, worldSize == 1 ? GuardOnDevice : false, resume?.ConsecutiveSkips ?? 0);
        _countsAtMark = _guard.Read();
        var sampler = new ShardSampler(_data.Count, rank, worldSize, t.Seed);
        // Each rank draws its own noise; the union over ranks is the global batch's noise.
        var noiseSeed = t.Seed + 1_000_003L * rank;
        if (resume is null)
        {
            _cursor = new BatchCursor(sampler);
            Replica.ReseedNoise(noiseSeed);
            BroadcastWeightsFromRankZero();
            LastApplied = null;
            return;
        }

        // The data position of the whole cluster, re-dealt over this world: exact when the world has not changed.
        var epochSamples = (long)sampler.ShardSize * worldSize;
        _cursor = new BatchCursor(sampler, resume.SamplesConsumed / epochSamples, (int)(resume.SamplesConsumed % epochSamples / worldSize));
        var restored = false;
        if (resume.Checkpoint is not null && rank == 0)
        {
            var problem = CheckpointStore.Verify(resume.Checkpoint);
            if (problem is not null) throw new InvalidDataException($"checkpoint {resume.Checkpoint}: {problem}");
            CheckpointStore.Restore(resume.Checkpoint, Replica, CheckpointStore.ReadState(resume.Checkpoint));
            restored = true;
        }
        var blob = BroadcastBytes(rank == 0 ? Replica.SaveState() : null);
        if (rank != 0) Replica.LoadState(blob);
        // A world of one that restored a checkpoint goes on with the exact noise stream it saved (so an interrupted
        // run equals an uninterrupted one); otherwise every rank's stream restarts from the position.
        if (!(restored && worldSize == 1))
            Replica.ReseedNoise(DeterministicRandom.Mix(noiseSeed, GanSchedule.UpdatesThrough(resume.Position, t.K)));
        LastApplied = resume.Position;
    }

    /// <summary>
    /// Computes, averages and applies every update of <paramref name="iteration"/> (k D updates, then G).
    /// <paramref name="yield"/>: ask the formation to stop after this iteration; the answer is the OR over all ranks.
    /// </summary>
    public IterationOutcome RunIteration(long iteration, bool yield = false)
    {
        if (LastApplied is not null && GanSchedule.IterationsThrough(LastApplied) != iteration)
            throw new InvalidOperationException($"asked for iteration {iteration}, but this replica is after {LastApplied}");
        Replica.SetIteration(iteration);
        var groupYield = false;
        // After a re-form inside an iteration (a survivor's all-reduce completed where others' did not), the updates
        // already applied are not trained again.
        var k = Spec.Training.K;
        var done = GanSchedule.UpdatesThrough(LastApplied, k);
        foreach (var step in GanSchedule.Iteration(iteration, k))
            if (GanSchedule.UpdatesThrough(step, k) > done)
                groupYield = Update(step, yield && step.Phase == StepPhase.Generator);
        return new IterationOutcome(groupYield);
    }

    /// <summary>One update: gradients, their average over the formation (tagged with the update, so ranks never mix two), the guard, the step.</summary>
    bool Update(StepKey step, bool yield)
    {
        using var scope = NewDisposeScope();
        var collective = _collective ?? throw new InvalidOperationException("the session is not part of a formation");
        var discriminator = step.Phase == StepPhase.Discriminator;
        if (discriminator)
        {
            // D update: this rank's slice of a fresh real minibatch [b, ...] and fresh noise.
            var real = _data.Batch(_cursor, LocalBatch);
            Replica.ComputeDiscriminatorGradients(real, last: step.SubStep == Spec.Training.K - 1);
        }
        else
        {
            Replica.ComputeGeneratorGradients(LocalBatch);
        }
        var network = discriminator ? Replica.FlatD : Replica.FlatG;
        var flags = yield ? YieldFlag : 0;
        var guard = _guard!;
        if (collective.WorldSize == 1)
        {
            // Nothing to average: the gradients stay where they are, and the guard reads them where they are.
            var d = guard.Decide(network.Grads.isfinite().all(), step.Iteration);
            if (!d.Skip) network.Step(d.Mask);
        }
        else
        {
            var grads = discriminator ? Replica.DGrads : Replica.GGrads;
            grads.GatherGrads();
            var outcome = collective.AllReduceMean(grads.Span, LocalBatch, GanSchedule.UpdatesThrough(step, Spec.Training.K), flags);
            flags = outcome.Flags;
            // Every rank holds the same average, so every rank takes the same decision.
            if (!guard.DecideHost(grads.AllFinite(), step.Iteration).Skip)
            {
                grads.ScatterGrads();
                network.Step();
            }
        }
        LastApplied = step;
        OnUpdate?.Invoke(step);
        return (flags & YieldFlag) != 0;
    }

    /// <summary>What the NaN guard counted since the last <see cref="Mark"/> (one device sync when it decides on a GPU).</summary>
    public (long Skipped, GuardCounts Counts) Mark()
    {
        var counts = _guard!.Read();
        var skipped = counts.Skipped - _countsAtMark.Skipped;
        _countsAtMark = counts;
        return (skipped, counts);
    }

    /// <summary>Rank 0's weights everywhere.</summary>
    void BroadcastWeightsFromRankZero()
    {
        if (_collective!.WorldSize == 1) return;
        foreach (var f in new[] { new FlatBuffer(Replica.FlatG), new FlatBuffer(Replica.FlatD) })
        {
            using (f)
            {
                f.GatherValues();
                _collective.Broadcast(f.Span);
                f.ScatterValues();
            }
        }
    }

    /// <summary>Rank 0's bytes on every rank: its length, then the bytes themselves as the bits of floats (a broadcast adds nothing).</summary>
    byte[] BroadcastBytes(byte[]? data)
    {
        if (_collective!.WorldSize == 1) return data!;
        var length = new[] { BitConverter.Int32BitsToSingle(data?.Length ?? 0) };
        _collective.Broadcast(length);
        var n = BitConverter.SingleToInt32Bits(length[0]);
        var packed = new float[(n + 3) / 4];
        if (data is not null) data.CopyTo(MemoryMarshal.AsBytes(packed.AsSpan()));
        _collective.Broadcast(packed);
        return data ?? MemoryMarshal.AsBytes(packed.AsSpan())[..n].ToArray();
    }

    /// <summary>Drops the collective (a new formation brings its own); the replica stays as it is.</summary>
    public void Abort()
    {
        _collective?.Dispose();
        _collective = null;
    }

    /// <summary>BatchNorm running statistics averaged over replicas, so every replica saves and samples the same model.</summary>
    public void SyncBuffers()
    {
        if (_collective!.WorldSize == 1) return;
        var buffers = Replica.Buffers;
        if (buffers.Length == 0) return;
        buffers.GatherValues();
        _collective.AllReduceMean(buffers.Span, 1);
        buffers.ScatterValues();
    }

    /// <summary>
    /// SHA-256 of G's and D's parameters, identical on every replica. BatchNorm running statistics are per worker
    /// during training (as DDP), so they count only with <paramref name="withBuffers"/>, after <see cref="SyncBuffers"/>.
    /// </summary>
    public string Checksum(bool withBuffers = false) => Replica.Checksum(withBuffers);

    /// <summary>
    /// Samples (and a checkpoint holding <paramref name="extra"/> files) of the current model, serialized in memory:
    /// the only part of a save that training waits for. Paths are relative to the run's output folder.
    /// </summary>
    public ArtifactBundle Snapshot(long iteration, bool checkpoint, IReadOnlyDictionary<string, byte[]>? extra = null)
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
            var snap = CheckpointStore.Snapshot(Replica, RunArtifacts.StateOf(Replica, iteration, _cursor), extra ?? new Dictionary<string, byte[]>());
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
        _guard?.Dispose();
        _collective?.Dispose();
    }
}
