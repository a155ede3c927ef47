using System.Diagnostics;
using GanCluster.Training.Core;

namespace GanCluster.Training.Output;

/// <summary>
/// Checkpoints in the background: training waits only for the in-memory snapshot; the disk write (fsync, manifest,
/// rename, retention) runs on a pool thread. At most one write is in flight: a new checkpoint first waits for the
/// previous one, so a slow disk slows training down rather than piling up snapshots in memory.
/// A failed write surfaces at the next <see cref="Enqueue"/> or at <see cref="Flush"/>.
/// </summary>
public sealed class CheckpointWriter
{
    Task<string>? _pending;

    /// <summary>How long the last <see cref="Enqueue"/> held training up (waiting for the previous write plus the snapshot).</summary>
    public TimeSpan LastStall { get; private set; }

    public void Enqueue(string output, GanReplica replica, CheckpointState state, int keep)
    {
        var clock = Stopwatch.StartNew();
        _pending?.GetAwaiter().GetResult();
        var snapshot = CheckpointStore.Snapshot(replica, state);
        LastStall = clock.Elapsed;
        _pending = Task.Run(() => CheckpointStore.Write(output, snapshot, keep));
    }

    /// <summary>Waits for the write in flight; returns the folder of the last checkpoint written, if any.</summary>
    public string? Flush() => _pending?.GetAwaiter().GetResult();
}
