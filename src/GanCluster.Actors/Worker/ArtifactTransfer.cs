using Akka.Actor;
using Akka.Event;
using GanCluster.Actors.Coordinator;
using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Actors.Worker;

/// <summary>
/// Up to <see cref="Size"/> requests in flight, their answers taken in the order asked: the one windowed transfer that
/// rank 0 uses in both directions (a checkpoint down, a save up). One round trip per 64 KB chunk would cap either at
/// 64 KB per round trip.
/// </summary>
/// <typeparam name="T">What the caller keeps with each request (the offset it asked for, say).</typeparam>
public sealed class ChunkWindow<T>
{
    public const int Size = 8;
    readonly Queue<(T State, Task<object> Answer)> _pending = new();

    public bool Full => _pending.Count >= Size;
    public bool IsEmpty => _pending.Count == 0;

    public void Add(T state, Task<object> answer) => _pending.Enqueue((state, answer));

    /// <summary>The oldest request's answer (an ask's timeout or failure is thrown here).</summary>
    public async Task<(T State, object Answer)> Next()
    {
        var (state, answer) = _pending.Dequeue();
        return (state, await answer.ConfigureAwait(false));
    }
}

/// <summary>
/// Rank 0's bulk bytes to and from the seed's store (<see cref="CheckpointActor"/>, addressed directly next to the
/// coordinator that asked, never through the coordinator's mailbox): a resumed run's checkpoint down, saves up, each
/// through a <see cref="ChunkWindow{T}"/>. At most one upload runs at a time.
/// </summary>
public sealed class ArtifactTransfer(ActorSystem system, ILoggingAdapter log, TimeSpan timeout)
{
    Task? _upload;   // rank 0's save in flight to the seed

    /// <summary>Waits (bounded) for the upload in flight; its failure was already reported to the coordinator.</summary>
    public void WaitForUpload(TimeSpan limit)
    {
        try { _upload?.Wait(limit); } catch (AggregateException) { }
    }

    /// <summary>The store next to <paramref name="coordinator"/> (resolved for each transfer: the coordinator may move to another seed).</summary>
    Task<IActorRef> StoreOf(IActorRef coordinator) =>
        system.ActorSelection(coordinator.Path / CheckpointActor.Name).ResolveOne(timeout);

    /// <summary>
    /// Rank 0 of a resumed run: the checkpoint's files from the seed, chunk by chunk, into a local folder checked
    /// against its manifest, so workers need no shared volume. Synchronous like all work on the worker's thread: it has
    /// nothing else to do until its formation is prepared (the other ranks wait in the ring connect).
    /// </summary>
    public string FetchCheckpoint(string runId, string checkpoint, IActorRef coordinator) =>
        FetchAsync(runId, checkpoint, coordinator).GetAwaiter().GetResult();

    async Task<string> FetchAsync(string runId, string checkpoint, IActorRef coordinator)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var store = await StoreOf(coordinator).ConfigureAwait(false);
        var local = Path.Combine(Path.GetTempPath(), "gancluster-resume", $"{Environment.ProcessId}-{Path.GetFileName(checkpoint)}");
        if (Directory.Exists(local)) Directory.Delete(local, recursive: true);
        Directory.CreateDirectory(local);
        var listed = Answer<CheckpointListed>(await store.Ask(new ListCheckpoint(runId, checkpoint), timeout).ConfigureAwait(false));
        for (var i = 0; i < listed.Files.Length; i++)
        {
            var name = Path.GetFileName(listed.Files[i]);
            var size = listed.Sizes[i];
            await using var fs = new FileStream(Path.Combine(local, name), FileMode.CreateNew, FileAccess.Write);
            var window = new ChunkWindow<long>();
            for (long next = 0; next < size || !window.IsEmpty;)
            {
                for (; !window.Full && next < size; next += ChunkBytes)
                    window.Add(next, store.Ask(new ReadCheckpoint(runId, checkpoint, name, next), timeout));
                var (offset, answer) = await window.Next().ConfigureAwait(false);
                var chunk = Answer<FileChunk>(answer);
                var expected = Math.Min(ChunkBytes, size - offset);
                if (chunk.Offset != offset || chunk.Data.Length != expected)
                    throw new InvalidDataException($"{name}: asked for {expected} bytes at {offset}, got {chunk.Data.Length} at {chunk.Offset}");
                fs.Write(chunk.Data);
            }
        }
        var problem = CheckpointStore.Verify(local);
        if (problem is not null) throw new InvalidDataException($"as received: {problem}");
        log.Info("run {0}: fetched checkpoint {1} from the seed ({2:F1} MB in {3:F1} s)", runId, checkpoint, listed.Sizes.Sum() / 1e6, clock.Elapsed.TotalSeconds);
        return local;
    }

    static T Answer<T>(object answer) => answer switch
    {
        T a => a,
        CheckpointRefused r => throw new InvalidDataException($"the seed refused: {r.Reason}"),
        _ => throw new InvalidDataException($"unexpected answer {answer.GetType().Name}"),
    };

    /// <summary>
    /// Serializes samples (and a checkpoint) in memory, then streams them to the seed's store in acknowledged chunks on
    /// a pool thread while training goes on. A new save first waits for the previous upload, so a slow link slows
    /// training rather than piling snapshots up in memory. Returns how long training was held up.
    /// </summary>
    /// <param name="self">The worker: the sender of what the pool thread tells the coordinator (it takes worker messages only from worker members).</param>
    public TimeSpan Upload(ReplicaSession s, string runId, long iteration, bool checkpoint, string coordinatorJson, IActorRef coordinator, IActorRef self)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        WaitForUpload(Timeout.InfiniteTimeSpan);
        var extra = new Dictionary<string, byte[]> { ["coordinator.json"] = System.Text.Encoding.UTF8.GetBytes(coordinatorJson) };
        var bundle = s.Snapshot(iteration, checkpoint, extra);
        var stall = clock.Elapsed;
        _upload = Task.Run(async () =>
        {
            try
            {
                var store = await StoreOf(coordinator);
                var files = bundle.Render().Concat(bundle.Files).ToList();
                // The store writes each chunk at its offset; they arrive in the order sent (one connection, one sender node).
                var window = new ChunkWindow<string>();
                async Task<bool> Accepted()
                {
                    if ((await window.Next()).Answer is not ChunkRefused refused) return true;
                    // The seed said why (and has told the coordinator if it was its failure): stop at once.
                    log.Warning("run {0}: the seed refused the outputs of iteration {1}: {2}", runId, iteration, refused.Reason);
                    return false;
                }
                foreach (var (rel, bytes) in files)
                {
                    var offset = 0;
                    do
                    {
                        var n = Math.Min(ChunkBytes, bytes.Length - offset);
                        window.Add(rel, store.Ask(new FileChunk(runId, iteration, rel, offset, bytes[offset..(offset + n)], offset + n == bytes.Length), timeout));
                        offset += n;
                        if (window.Full && !await Accepted()) return;
                    } while (offset < bytes.Length);
                }
                while (!window.IsEmpty)
                    if (!await Accepted()) return;
                store.Tell(new ArtifactsUploaded(runId, iteration, files.Select(f => f.Path).ToArray(), checkpoint), self);
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
