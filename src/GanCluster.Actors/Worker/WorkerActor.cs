using System.Net;
using Akka.Actor;
using Akka.Event;
using GanCluster.DataPlane;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Data;
using GanCluster.Training.Spec;
using TorchSharp;
using static GanCluster.Protocol.ArtifactProtocol;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Worker;

/// <summary>Per-worker settings (one worker per device).</summary>
/// <param name="Ring">The gradient ring's handshake key (from the cluster's secret) and whether it encrypts.</param>
/// <param name="LeaveTimeout">How long SIGTERM waits for the run to let this worker go at an update boundary.</param>
public sealed record WorkerSettings(string WorkerId, string Device, string DataBind, string DataHost, TimeSpan RingTimeout, TimeSpan UploadTimeout,
    RingSecurity Ring, TimeSpan LeaveTimeout);

/// <summary>
/// Owns one device. Runs on a pinned dispatcher (its own thread): TorchSharp's dispose scopes are thread-static, so all
/// tensor work happens synchronously inside message handlers, never across an await.
/// </summary>
public sealed class WorkerActor : ReceiveActor, IWithTimers
{
    public const string Dispatcher = "gancluster-worker-dispatcher";
    public const string DispatcherHocon = $$"""
        {{Dispatcher}} {
          type = PinnedDispatcher
          executor = thread-pool-executor
        }
        """;

    sealed record RegisterTick;
    /// <summary>From coordinated shutdown (SIGTERM): leave the run cleanly, then answer <see cref="LeaveDone"/>.</summary>
    public sealed record LeaveGracefully;
    public sealed record LeaveDone;

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly WorkerSettings _settings;
    readonly IActorRef _coordinator;
    readonly torch.Device _device;
    RingListener? _listener;
    WorkerSession? _session;
    string? _runId;
    long _formation;
    Task? _upload;                 // rank 0's save in flight to the seed; at most one
    RingReduce? _ring;             // the formation's ring (its time in all-reduces is measured)
    readonly StepTimes _times = new();
    IActorRef? _leaveRequester;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(WorkerSettings settings, IActorRef coordinator, torch.Device device) =>
        Akka.Actor.Props.Create(() => new WorkerActor(settings, coordinator, device)).WithDispatcher(Dispatcher);

    public WorkerActor(WorkerSettings settings, IActorRef coordinator, torch.Device device)
    {
        _settings = settings;
        _coordinator = coordinator;
        _device = device;

        // Registration doubles as a heartbeat: a coordinator that moved to another seed learns about us again.
        Receive<RegisterTick>(_ => _coordinator.Tell(new RegisterWorker(_settings.WorkerId, _settings.Device, _settings.DataHost, _listener!.Port)));
        Receive<WorkerRegistered>(_ => { });
        Receive<PrepareRun>(OnPrepare);
        Receive<ExecuteStep>(OnExecute);
        Receive<AbortStep>(OnAbort);
        Receive<SaveArtifacts>(OnSave);
        Receive<FinishRun>(OnFinish);
        Receive<StopRun>(s =>
        {
            if (s.RunId != _runId) return;
            _log.Info("run {0} stopped: {1}", s.RunId, s.Reason);
            EndSession();
        });
        Receive<LeaveGracefully>(_ =>
        {
            Timers.Cancel("register");   // no more heartbeats: they would make us a joiner again
            if (_session is null)
            {
                Sender.Tell(new LeaveDone());
                return;
            }
            _log.Info("shutting down: asking to leave run {0} at the next iteration boundary", _runId);
            _leaveRequester = Sender;
            _coordinator.Tell(new LeaveRun(_settings.WorkerId));
        });
        Receive<LeaveAccepted>(_ =>
        {
            _log.Info("left the run; shutting down");
            EndSession();
            _leaveRequester?.Tell(new LeaveDone());
            _leaveRequester = null;
        });
    }

    protected override void PreStart()
    {
        _listener = RingListener.Start(IPAddress.Parse(_settings.DataBind));
        _log.Info("worker {0} on {1}; data plane {2}:{3}", _settings.WorkerId, _device, _settings.DataHost, _listener.Port);
        Timers.StartPeriodicTimer("register", new RegisterTick(), TimeSpan.Zero, TimeSpan.FromSeconds(2));

        // SIGTERM / scale-down: leave the run at an iteration boundary before the node leaves the cluster.
        var self = Self;
        var wait = _settings.LeaveTimeout;
        CoordinatedShutdown.Get(Context.System).AddTask(CoordinatedShutdown.PhaseBeforeClusterShutdown, "leave-run-" + Self.Path.Name, async () =>
        {
            try { await self.Ask<LeaveDone>(new LeaveGracefully(), wait); }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { }
            return Akka.Done.Instance;
        });
    }

    protected override void PostStop()
    {
        EndSession();
        // A save still uploading is waited for (bounded): nothing written on rank 0 is thrown away at shutdown.
        try { _upload?.Wait(_settings.UploadTimeout); } catch (AggregateException) { }
        _listener?.Dispose();
    }

    void OnPrepare(PrepareRun p)
    {
        RunSpec spec;
        try
        {
            spec = RunSpecValidator.Parse(p.SpecJson, $"run {p.RunId}");
            // A survivor keeps its replica (re-form); a fresh run, another run or a worker without one builds it.
            if (p.Resume is null || _session is null || _session.RunId != p.RunId)
            {
                EndSession();
                _session = new WorkerSession(p.RunId, spec, _device);
                _log.Info("run {0}: data {1}", p.RunId, _session.DataDescription);
            }
        }
        catch (Exception e)
        {
            _log.Error(e, "run {0}: could not prepare", p.RunId);
            EndSession();
            Sender.Tell(new PrepareFailed(p.RunId, p.Formation, p.Rank, _settings.WorkerId, ForClients(e)));
            return;
        }
        var s = _session;
        _runId = p.RunId;
        _formation = p.Formation;
        string? fetched = null;
        var source = p.Resume?.Checkpoint;   // on the seed
        if (p.Rank == 0 && source is { } checkpoint)
        {
            try
            {
                fetched = FetchCheckpoint(p.RunId, checkpoint, Sender);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or AskTimeoutException)
            {
                _log.Error(e, "run {0}: could not fetch checkpoint {1} from the seed", p.RunId, checkpoint);
                EndSession();
                Sender.Tell(new PrepareFailed(p.RunId, p.Formation, p.Rank, _settings.WorkerId, $"could not fetch checkpoint {checkpoint} from the seed: {e.Message}"));
                return;
            }
            p = p with { Resume = p.Resume! with { Checkpoint = fetched } };
        }
        try
        {
            var peers = p.Peers.Select(x => new RingPeer(x.Rank, x.Host, x.Port)).ToList();
            var ring = RingAllReduce.Connect(_listener!, p.Formation, p.Rank, peers, _settings.RingTimeout, log: m => _log.Warning("data plane: {0}", m),
                security: _settings.Ring);
            _ring = new RingReduce(ring);
            _times.Reset();
            s.Form(p.Rank, p.WorldSize, p.LocalBatches[p.Rank], _ring, p.Resume);
            var from = p.Resume is null ? "" : $", from {p.Resume.Position?.ToString() ?? "the start"}" + (source is null || p.Rank != 0 ? "" : $" ({source})");
            var how = p.WorldSize == 1 ? "not needed" : ring.Encrypted ? "authenticated and encrypted"
                : _settings.Ring.Authenticated ? "authenticated" : "NOT authenticated (Node:Insecure)";
            _log.Info("run {0}: rank {1} of {2}, local batch {3}, {4} samples{5}; ring {6}",
                [p.RunId, p.Rank, p.WorldSize, p.LocalBatches[p.Rank], s.DatasetSize, from, how]);
            Sender.Tell(new RunPrepared(p.RunId, p.Formation, p.Rank, _settings.WorkerId, s.DatasetSize));
        }
        catch (Exception e)
        {
            // The ring could not form (a peer died meanwhile, say): the coordinator re-forms without it.
            _log.Error(e, "run {0}: forming rank {1} failed", p.RunId, p.Rank);
            s.Abort();
            Sender.Tell(new StepFailed(p.RunId, p.Formation, p.Resume?.Position ?? new StepKey(0, StepPhase.Discriminator, 0), p.Rank, ForClients(e)));
        }
        finally
        {
            if (fetched is not null) Directory.Delete(fetched, recursive: true);   // loaded into the replica by now
        }
    }

    /// <summary>
    /// Rank 0 of a resumed run: the checkpoint's files from the seed's checkpoint actor, chunk by chunk, into a local
    /// folder checked against its manifest, so workers need no shared volume. Synchronous like all work on this thread:
    /// the worker has nothing else to do until its formation is prepared (the other ranks wait in the ring connect).
    /// </summary>
    string FetchCheckpoint(string runId, string checkpoint, IActorRef seed)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var timeout = _settings.UploadTimeout;
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

    void OnExecute(ExecuteStep e)
    {
        var arrived = System.Diagnostics.Stopwatch.GetTimestamp();
        if (!Current(e.RunId, e.Formation, e.Step)) return;
        var s = _session!;
        try
        {
            _times.Arrived(arrived);
            if (e.Commit is not null) s.Commit(e.Commit);
            var checksum = e.ReportChecksum ? s.Checksum() : null;
            var computeStart = System.Diagnostics.Stopwatch.GetTimestamp();
            var reduceBefore = _ring?.Ticks ?? 0;
            var finite = s.ComputeAndReduce(e.Step);
            var done = System.Diagnostics.Stopwatch.GetTimestamp();
            var reduce = (_ring?.Ticks ?? 0) - reduceBefore;
            _times.Worked(computeStart - arrived, done - computeStart - reduce, reduce);
            WindowStats? stats = null;
            if (e.ReportStats)
            {
                var w = s.Replica.TakeStats();
                stats = new WindowStats(w.LossD, w.LossG, w.DReal, w.DFake, w.GSteps);
                if (_times.TakeSummary() is { } summary) _log.Info("run {0}: rank {1}, last {2}", e.RunId, s.Rank, summary);
            }
            Sender.Tell(new StepReduced(e.RunId, e.Formation, e.Step, s.Rank, s.LocalBatch, stats, checksum, NonFinite: !finite));
            _times.Replied(System.Diagnostics.Stopwatch.GetTimestamp());
        }
        catch (Exception ex)
        {
            Fail(e.RunId, e.Formation, e.Step, ex);
        }
    }

    void OnAbort(AbortStep a)
    {
        var has = a.RunId == _runId && _session is not null;
        if (has)
        {
            _session!.Abort();
            _formation = a.Formation;
            _log.Warning("run {0}: update in flight aborted; this replica holds {1}", a.RunId, _session.LastCommitted?.ToString() ?? "no update yet");
        }
        Sender.Tell(new StepAborted(a.RunId, a.Formation, _settings.WorkerId, has, has ? _session!.LastCommitted : null));
    }

    void OnSave(SaveArtifacts a)
    {
        var step = a.Commit ?? new StepKey(a.Iteration - 1, StepPhase.Generator, 0);
        if (!Current(a.RunId, a.Formation, step)) return;
        var s = _session!;
        try
        {
            if (a.Commit is not null) s.Commit(a.Commit);
            s.SyncBuffers();
            if (s.Rank != 0) return;
            var stall = Snapshot(s, a.RunId, a.Iteration, a.Checkpoint, a.CoordinatorJson, Sender);
            Sender.Tell(new ArtifactsSnapshotted(a.RunId, a.Formation, a.Iteration, stall.TotalMilliseconds));
        }
        catch (Exception ex)
        {
            Fail(a.RunId, a.Formation, step, ex);
        }
    }

    void OnFinish(FinishRun f)
    {
        var step = f.Commit ?? new StepKey(_session?.Spec.Training.Iterations - 1 ?? 0, StepPhase.Generator, 0);
        if (!Current(f.RunId, f.Formation, step)) return;
        var s = _session!;
        try
        {
            if (f.Commit is not null) s.Commit(f.Commit);
            s.SyncBuffers();
            var checksum = s.Checksum(withBuffers: true);
            _log.Info("run {0}: rank {1} final parameter checksum {2}", f.RunId, s.Rank, checksum);
            if (s.Rank == 0) Snapshot(s, f.RunId, s.Spec.Training.Iterations, checkpoint: true, f.CoordinatorJson, Sender);
            Sender.Tell(new RunFinishedOnWorker(f.RunId, f.Formation, s.Rank, checksum));
        }
        catch (Exception ex)
        {
            Fail(f.RunId, f.Formation, step, ex);
        }
    }

    /// <summary>
    /// Serializes samples (and a checkpoint) in memory, then streams them to the seed in acknowledged chunks on a pool
    /// thread while training goes on. A new save first waits for the previous upload, so a slow link slows training
    /// rather than piling snapshots up in memory. Returns how long training was held up.
    /// </summary>
    TimeSpan Snapshot(WorkerSession s, string runId, long iteration, bool checkpoint, string coordinatorJson, IActorRef coordinator)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try { _upload?.Wait(); } catch (AggregateException) { }   // its failure was already reported to the coordinator
        var bundle = s.Snapshot(iteration, checkpoint, coordinatorJson);
        var stall = clock.Elapsed;
        var timeout = _settings.UploadTimeout;
        var log = _log;
        var self = Self;   // the sender of what this pool thread tells: the seed takes worker messages only from worker members
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

    bool Current(string runId, long formation, StepKey step)
    {
        if (runId == _runId && formation == _formation && _session is not null) return true;
        _log.Warning("rejected {0} for run {1} (formation {2}): this worker is on run {3} (formation {4})", step, runId, formation, _runId ?? "(none)", _formation);
        Sender.Tell(new StepFailed(runId, formation, step, -1, $"worker {_settings.WorkerId} is not part of run {runId} formation {formation}"));
        return false;
    }

    /// <summary>
    /// A step failed here (often: the ring broke because a peer died). The replica is kept: it holds the last committed
    /// update unless the failure hit while applying, and the coordinator only takes a state from a replica that says so.
    /// </summary>
    void Fail(string runId, long formation, StepKey step, Exception ex)
    {
        _log.Error(ex, "run {0}: {1} failed", runId, step);
        var rank = _session?.Rank ?? -1;
        _session?.Abort();
        Sender.Tell(new StepFailed(runId, formation, step, rank, ForClients(ex)));
    }

    /// <summary>
    /// What a failure may tell the coordinator, and through it any client: which fields or which kind of error, never
    /// what a file on this machine holds, whether it exists or how large it is, nor a native stack trace. The full
    /// exception is in this worker's log.
    /// </summary>
    string ForClients(Exception e)
    {
        var where = $"worker {_settings.WorkerId}";
        var detail = e switch
        {
            InvalidRunSpecException s => $"the run spec is not valid here: {string.Join(", ", s.Errors.Select(x => x.Field).Distinct())}",
            DatasetException => "dataset.path could not be read as the spec's dataset",
            IOException or UnauthorizedAccessException => $"{e.GetType().Name} (a file could not be read or written)",
            _ when e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase) => "out of memory on " + _settings.Device,
            _ => FirstLine(e.Message),
        };
        return $"{where}: {detail} (details in the worker's log)";
    }

    static string FirstLine(string message)
    {
        var line = message.Split('\n')[0].Trim();
        // Native errors carry frames and paths after their first line; keep the sentence only.
        return line.Length <= 200 ? line : line[..200] + "…";
    }

    void EndSession()
    {
        _session?.Dispose();
        _session = null;
        _runId = null;
    }
}
