using System.Net;
using Akka.Actor;
using Akka.Event;
using System.Diagnostics;
using GanCluster.Actors.Telemetry;
using GanCluster.DataPlane;
using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using GanCluster.Training.Data;
using GanCluster.Training.Spec;
using TorchSharp;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Worker;

/// <summary>Per-worker settings (one worker per device).</summary>
/// <param name="Ring">The gradient ring's handshake key (from the cluster's secret) and whether it encrypts.</param>
/// <param name="LeaveTimeout">How long SIGTERM waits for the run to let this worker go at an update boundary.</param>
/// <param name="DataPort">The ring listener's port (Node:DataPorts); 0 = any free port.</param>
public sealed record WorkerSettings(string WorkerId, string Device, string DataBind, string DataHost, TimeSpan RingTimeout, TimeSpan UploadTimeout,
    RingSecurity Ring, TimeSpan LeaveTimeout, int DataPort = 0);

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
    /// <summary>Train the next iteration of the segment: one iteration per message, so control messages (a yield, an abort) get in between.</summary>
    sealed record ContinueSegment
    {
        public static readonly ContinueSegment Instance = new();
    }
    /// <summary>The segment being trained, and whether a yield was asked for.</summary>
    sealed record Segment(string RunId, long Formation, long Until, bool ReportChecksum, IActorRef Coordinator)
    {
        public bool Yield { get; set; }
        public long LastProgress { get; set; } = Stopwatch.GetTimestamp();
    }
    /// <summary>How often a long segment tells the coordinator it is still advancing.</summary>
    static readonly TimeSpan ProgressEvery = TimeSpan.FromSeconds(ProgressEverySeconds);
    /// <summary>From coordinated shutdown (SIGTERM): leave the run cleanly, then answer <see cref="LeaveDone"/>.</summary>
    public sealed record LeaveGracefully;
    public sealed record LeaveDone;

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly WorkerSettings _settings;
    readonly IActorRef _coordinator;
    readonly torch.Device _device;
    RingListener? _listener;
    ReplicaSession? _session;
    string? _runId;
    long _formation;
    Segment? _segment;
    readonly ArtifactTransfer _transfer;
    TimedCollective? _collective;  // the formation's ring (its time in all-reduces is measured)
    readonly StepTimes _times = new();
    IActorRef? _leaveRequester;
    readonly KeyValuePair<string, object?> _deviceTag;
    long _updateMark;              // when the update being computed began (for NodeMetrics.UpdateDuration)
    readonly long _startedAt = Stopwatch.GetTimestamp();
    bool _registered, _warnedUnregistered;
    /// <summary>How long a worker may go unanswered by a coordinator before it says so (once).</summary>
    static readonly TimeSpan RegistrationWarning = TimeSpan.FromSeconds(30);

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(WorkerSettings settings, IActorRef coordinator, torch.Device device) =>
        Akka.Actor.Props.Create(() => new WorkerActor(settings, coordinator, device)).WithDispatcher(Dispatcher);

    public WorkerActor(WorkerSettings settings, IActorRef coordinator, torch.Device device)
    {
        _settings = settings;
        _coordinator = coordinator;
        _device = device;
        _deviceTag = new("device", settings.Device);
        _transfer = new ArtifactTransfer(Context.System, _log, settings.UploadTimeout);

        // Registration doubles as a heartbeat: a coordinator that moved to another seed learns about us again.
        Receive<RegisterTick>(_ =>
        {
            _coordinator.Tell(new RegisterWorker(_settings.WorkerId, _settings.Device, _settings.DataHost, _listener!.Port));
            // Akka's own singleton-proxy warning is off (it fires at once, MembershipHosting); this one waits its 30 s.
            if (!_registered && !_warnedUnregistered && Stopwatch.GetElapsedTime(_startedAt) >= RegistrationWarning)
            {
                _warnedUnregistered = true;
                _log.Warning("no coordinator has answered this worker's registration for {0:F0} s: is a seed running at Node:Seeds, and does it accept this node?",
                    RegistrationWarning.TotalSeconds);
            }
        });
        Receive<WorkerRegistered>(_ =>
        {
            if (!_registered && _warnedUnregistered) _log.Info("registered with the coordinator after {0:F0} s", Stopwatch.GetElapsedTime(_startedAt).TotalSeconds);
            if (!_registered) WorkerReadiness.Get(Context.System).Registered(_settings.WorkerId);   // the node's /ready
            _registered = true;
        });
        Receive<PrepareRun>(OnPrepare);
        Receive<RunSegment>(OnSegment);
        Receive<ContinueSegment>(_ => Advance());
        Receive<YieldSegment>(y =>
        {
            if (y.RunId != _runId || y.Formation != _formation || _session is null) return;
            // Between segments the worker is at a boundary already: the coordinator decides there without a flag.
            if (_segment is { } seg) seg.Yield = true;
            _log.Info("run {0}: asked to stop at the next iteration boundary ({1} iterations done)", y.RunId, GanSchedule.IterationsThrough(_session.LastApplied));
        });
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
            if (_segment is not null) _segment.Yield = true;
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
        WorkerReadiness.Get(Context.System).Expect(_settings.WorkerId);   // the node is not ready (/ready) until it has registered
        _listener = RingListener.Start(IPAddress.Parse(_settings.DataBind), _settings.DataPort);
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
        _transfer.WaitForUpload(_settings.UploadTimeout);
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
                _session = new ReplicaSession(p.RunId, spec, _device) { OnUpdate = UpdateApplied };
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
                fetched = _transfer.FetchCheckpoint(p.RunId, checkpoint, Sender);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or AskTimeoutException or ActorNotFoundException)
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
            // Every rank parses the same spec, so every rank forms the ring with the same wire format.
            var ring = RingAllReduce.Connect(_listener!, p.Formation, p.Rank, peers, _settings.RingTimeout, log: m => _log.Warning("data plane: {0}", m),
                security: _settings.Ring, wire: RingWires.Parse(s.Spec.Training.WirePrecision));
            _collective = new TimedCollective(ring, _settings.Device);   // RingAllReduce is an ICollective
            _times.Reset();
            _segment = null;
            s.Sync(p.Rank, p.WorldSize, p.LocalBatches[p.Rank], _collective, p.Resume);
            var from = p.Resume is null ? "" : $", from {p.Resume.Position?.ToString() ?? "the start"}" + (source is null || p.Rank != 0 ? "" : $" ({source})");
            var how = p.WorldSize == 1 ? "not needed" : (ring.Encrypted ? "authenticated and encrypted"
                : _settings.Ring.Authenticated ? "authenticated" : "NOT authenticated (Node:Insecure)") + $", gradients as {ring.WireFormat.Name()}";
            _log.Info("run {0}: rank {1} of {2}, local batch {3}, {4} samples{5}; ring {6}; compute {7}, {8}",
                [p.RunId, p.Rank, p.WorldSize, p.LocalBatches[p.Rank], s.DatasetSize, from, how, s.Spec.Training.Precision, s.Spec.Training.MemoryFormat]);
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

    void OnSegment(RunSegment r)
    {
        if (!Current(r.RunId, r.Formation, NextStep())) return;
        if (_times.SegmentStarted(Stopwatch.GetTimestamp()) is { } waited) NodeMetrics.CoordinatorWait.Record(NodeMetrics.Seconds(waited), _deviceTag);
        _segment = new Segment(r.RunId, r.Formation, r.Until, r.ReportChecksum, Sender);
        Self.Tell(ContinueSegment.Instance);
    }

    /// <summary>The next update this replica would compute (for error reports).</summary>
    StepKey NextStep() => _session?.LastApplied is { } last ? GanSchedule.Next(last, _session.Spec.Training.K) : GanSchedule.First;

    /// <summary>
    /// One iteration of the segment: every update is applied as soon as its all-reduce completes, with no round trip
    /// through the seed. The segment ends at its last iteration, or earlier when some rank asked to yield (the OR of
    /// the G update's flags, so every rank stops after the same iteration).
    /// </summary>
    void Advance()
    {
        if (_segment is not { } seg || _session is not { } s) return;
        var iteration = GanSchedule.IterationsThrough(s.LastApplied);
        try
        {
            var start = _updateMark = Stopwatch.GetTimestamp();
            var reduceBefore = _collective?.Ticks ?? 0;
            var outcome = iteration < seg.Until ? s.RunIteration(iteration, seg.Yield) : new IterationOutcome(true);
            var now = Stopwatch.GetTimestamp();
            _times.Worked(s.Spec.Training.K + 1, now - start, (_collective?.Ticks ?? 0) - reduceBefore);
            if (outcome.GroupYield || iteration + 1 >= seg.Until)
            {
                EndSegment(seg, s);
                return;
            }
            if (Stopwatch.GetElapsedTime(seg.LastProgress, now) >= ProgressEvery)
            {
                seg.LastProgress = now;
                seg.Coordinator.Tell(new SegmentProgress(seg.RunId, seg.Formation, s.Rank, s.LastApplied));
            }
            Self.Tell(ContinueSegment.Instance);
        }
        catch (Exception ex)
        {
            _segment = null;
            Fail(seg.RunId, seg.Formation, NextStep(), ex, seg.Coordinator);
        }
    }

    void EndSegment(Segment seg, ReplicaSession s)
    {
        _segment = null;
        var done = GanSchedule.IterationsThrough(s.LastApplied);
        var (skipped, counts) = s.Mark();
        WindowStats? stats = null;
        if (Cadence.Of(s.Spec).IsLog(done))
        {
            var w = s.Replica.TakeStats();
            stats = new WindowStats(w.LossD, w.LossG, w.DReal, w.DFake, w.GSteps, _times.AllReduceMsPerUpdate);
            if (_times.TakeSummary() is { } summary) _log.Info("run {0}: rank {1}, last {2}", seg.RunId, s.Rank, summary);
        }
        var checksum = seg.ReportChecksum ? s.Checksum() : null;
        seg.Coordinator.Tell(new SegmentDone(seg.RunId, seg.Formation, s.Rank, s.LastApplied, s.LocalBatch, stats, checksum, skipped, counts.Consecutive, counts.Stopped));
        _times.SegmentEnded(Stopwatch.GetTimestamp());
    }

    void OnAbort(AbortStep a)
    {
        var has = a.RunId == _runId && _session is not null;
        if (has)
        {
            _session!.Abort();
            _segment = null;
            _formation = a.Formation;
            _log.Warning("run {0}: segment stopped; this replica holds {1}", a.RunId, _session.LastApplied?.ToString() ?? "no update yet");
        }
        Sender.Tell(new StepAborted(a.RunId, a.Formation, _settings.WorkerId, has, has ? _session!.LastApplied : null));
    }

    void OnSave(SaveArtifacts a)
    {
        var step = NextStep();
        if (!Current(a.RunId, a.Formation, step)) return;
        var s = _session!;
        try
        {
            s.SyncBuffers();
            if (s.Rank != 0) return;
            var stall = _transfer.Upload(s, a.RunId, a.Iteration, a.Checkpoint, a.CoordinatorJson, Sender, Self);
            NodeMetrics.SnapshotDuration.Record(stall.TotalSeconds, _deviceTag);
            Sender.Tell(new ArtifactsSnapshotted(a.RunId, a.Formation, a.Iteration, stall.TotalMilliseconds));
        }
        catch (Exception ex)
        {
            Fail(a.RunId, a.Formation, step, ex);
        }
    }

    void OnFinish(FinishRun f)
    {
        var step = NextStep();
        if (!Current(f.RunId, f.Formation, step)) return;
        var s = _session!;
        try
        {
            s.SyncBuffers();
            var checksum = s.Checksum(withBuffers: true);
            _log.Info("run {0}: rank {1} final parameter checksum {2}", f.RunId, s.Rank, checksum);
            if (s.Rank == 0) _transfer.Upload(s, f.RunId, s.Spec.Training.Iterations, checkpoint: true, f.CoordinatorJson, Sender, Self);
            Sender.Tell(new RunFinishedOnWorker(f.RunId, f.Formation, s.Rank, checksum));
        }
        catch (Exception ex)
        {
            Fail(f.RunId, f.Formation, step, ex);
        }
    }

    /// <summary>An update was applied (ReplicaSession.OnUpdate, on this thread): its time since the previous one's end, or the iteration's start.</summary>
    void UpdateApplied(StepKey step)
    {
        var now = Stopwatch.GetTimestamp();
        NodeMetrics.UpdateDuration.Record(NodeMetrics.Seconds(now - _updateMark), _deviceTag,
            new("phase", step.Phase == StepPhase.Discriminator ? "D" : "G"));
        _updateMark = now;
    }

    bool Current(string runId, long formation, StepKey step)
    {
        if (runId == _runId && formation == _formation && _session is not null) return true;
        _log.Warning("rejected {0} for run {1} (formation {2}): this worker is on run {3} (formation {4})", step, runId, formation, _runId ?? "(none)", _formation);
        Sender.Tell(new StepFailed(runId, formation, step, -1, $"worker {_settings.WorkerId} is not part of run {runId} formation {formation}"));
        return false;
    }

    /// <summary>
    /// An update failed here (often: the ring broke because a peer died). The replica is kept: it holds the update it
    /// reports as last applied unless the failure hit while applying, and the coordinator takes a state only from a
    /// replica that answers the abort.
    /// </summary>
    void Fail(string runId, long formation, StepKey step, Exception ex, IActorRef? coordinator = null)
    {
        _log.Error(ex, "run {0}: {1} failed", runId, step);
        var rank = _session?.Rank ?? -1;
        _session?.Abort();
        (coordinator ?? Sender).Tell(new StepFailed(runId, formation, step, rank, ForClients(ex)));
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
        _segment = null;
        _session?.Dispose();
        _session = null;
        _runId = null;
    }
}
