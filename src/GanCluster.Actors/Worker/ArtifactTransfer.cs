using Akka.Actor;
using Akka.Event;
using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Actors.Worker;

/// <summary>
/// Rank 0's bulk bytes to and from the seed's checkpoint actor: a resumed run's checkpoint down, saves up, each with
/// <see cref="ChunkWindow"/> chunks in flight. At most one upload runs at a time.
/// </summary>
public sealed class ArtifactTransfer(ILoggingAdapter log, TimeSpan timeout)
{
    readonly ILoggingAdapter _log = log;
    readonly TimeSpan _timeout = timeout;
    Task? _upload;   // rank 0's save in flight to the seed

    /// <summary>Waits (bounded) for the upload in flight; its failure was already reported to the coordinator.</summary>
    public void WaitForUpload(TimeSpan limit)
    {
        try { _upload?.Wait(limit); } catch (AggregateException) { }
    }

    /// <summary>
    /// Rank 0 of a resumed run: the checkpoint's files from the seed's checkpoint actor, chunk by chunk, into a local
    /// folder checked against its manifest, so workers need no shared volume. Synchronous like all work on this thread:
    /// the worker has nothing else to do until its formation is prepared (the other ranks wait in the ring connect).
    /// </summary>
    public string FetchCheckpoint(string runId, string checkpoint, IActorRef seed)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var timeout = _timeout;
        var local = Path.Combine(Path.GetTempPath(), "gancluster-resume", $"{Environment.ProcessId}-{Path.GetFileName(checkpoint)}");
        if (Directory.Exists(local)) Directory.Delete(local, recursive: true);
        Directory.CreateDirectory(local);
        var listed = Answer<CheckpointListed>(seed.Ask(new ListCheckpoint(runId, checkpoint), timeout));
        for (var i = 0; i < listed.Files.Length; i++)
        {
            var name = Path.GetFileName(listed.Files[i]);
            using var fs = new FileStream(Path.Combine(local, name), FileMode.CreateNew, FileAccess.Write);
            // Up to ChunkWindow chunks asked for at once: one round trip per chunk would cap this at 64 KB per RTT.
            var size = listed.Sizes[i];
            var pending = new Queue<(long Offset, Task<object> Ask)>();
            for (long next = 0; next < size || pending.Count > 0;)
            {
                for (; pending.Count < ChunkWindow && next < size; next += ChunkBytes)
                    pending.Enqueue((next, seed.Ask(new ReadCheckpoint(runId, checkpoint, name, next), timeout)));
                var (offset, ask) = pending.Dequeue();
                var chunk = Answer<FileChunk>(ask);
                var expected = Math.Min(ChunkBytes, size - offset);
                if (chunk.Offset != offset || chunk.Data.Length != expected)
                    throw new InvalidDataException($"{name}: asked for {expected} bytes at {offset}, got {chunk.Data.Length} at {chunk.Offset}");
                fs.Write(chunk.Data);
            }
        }
        var problem = CheckpointStore.Verify(local);
        if (problem is not null) throw new InvalidDataException($"as received: {problem}");
        _log.Info("run {0}: fetched checkpoint {1} from the seed ({2:F1} MB in {3:F1} s)", runId, checkpoint, listed.Sizes.Sum() / 1e6, clock.Elapsed.TotalSeconds);
        return local;
    }

    // Chunks in flight at once, fetching a checkpoint or uploading a save.
    const int ChunkWindow = 8;

    static T Answer<T>(Task<object> ask) => ask.GetAwaiter().GetResult() switch
    {
        T answer => answer,
        CheckpointRefused r => throw new InvalidDataException($"the seed refused: {r.Reason}"),
        var other => throw new InvalidDataException($"unexpected answer {other.GetType().Name}"),
    };

    /// <summary>
    /// Serializes samples (and a checkpoint) in memory, then streams them to the seed in acknowledged chunks on a pool
    /// thread while training goes on. A new save first waits for the previous upload, so a slow link slows training
    /// rather than piling snapshots up in memory. Returns how long training was held up.
    /// </summary>
    public TimeSpan Upload(ReplicaSession s, string runId, long iteration, bool checkpoint, string coordinatorJson, IActorRef coordinator, IActorRef self)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        WaitForUpload(Timeout.InfiniteTimeSpan);
        var extra = new Dictionary<string, byte[]> { ["coordinator.json"] = System.Text.Encoding.UTF8.GetBytes(coordinatorJson) };
        var bundle = s.Snapshot(iteration, checkpoint, extra);
        var stall = clock.Elapsed;
        var timeout = _timeout;
        var log = _log;   // self: the sender of what this pool thread tells (the seed takes worker messages only from worker members)
        _upload = Task.Run(async () =>
        {
            try
            {
                var files = bundle.Render().Concat(bundle.Files).ToList();
                // Up to ChunkWindow chunks in flight, as fetches: one round trip per 64 KB would cap the upload at 64 KB per RTT.
                // The seed writes each chunk at its offset; they arrive in the order sent (one connection, one sender node).
                var pending = new Queue<Task<IGanClusterMessage>>();
                async Task<bool> Settle(int keep)
                {
                    while (pending.Count > keep)
                    {
                        if (await pending.Dequeue() is ChunkRefused refused)
                        {
                            // The seed said why (and has told the coordinator if it was its failure): stop at once.
                            log.Warning("run {0}: the seed refused the outputs of iteration {1}: {2}", runId, iteration, refused.Reason);
                            return false;
                        }
                    }
                    return true;
                }
                foreach (var (rel, bytes) in files)
                {
                    var offset = 0;
                    do
                    {
                        var n = Math.Min(ChunkBytes, bytes.Length - offset);
                        var last = offset + n == bytes.Length;
                        pending.Enqueue(coordinator.Ask<IGanClusterMessage>(new FileChunk(runId, iteration, rel, offset, bytes[offset..(offset + n)], last), timeout));
                        offset += n;
                        if (!await Settle(ChunkWindow - 1)) return;
                    } while (offset < bytes.Length);
                }
                if (!await Settle(0)) return;
                coordinator.Tell(new ArtifactsUploaded(runId, iteration, files.Select(f => f.Path).ToArray(), checkpoint), self);
            }
            catch (Exception e)
            {
                log.Error(e, "run {0}: uploading the outputs of iteration {1} failed", runId, iteration);
                coordinator.Tell(new ArtifactsFailed(runId, iteration, e.Message), self);
            }
        });
        log.Info("run {0}: outputs of iteration {1} snapshotted in {2:F0} ms; uploading in the background", runId, iteration, stall.TotalMilliseconds);
        return stall;
    }
}
