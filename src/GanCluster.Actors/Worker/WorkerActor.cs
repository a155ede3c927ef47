using System.Net;
using Akka.Actor;
using Akka.Event;
using GanCluster.DataPlane;
using GanCluster.Protocol;
using GanCluster.Training.Spec;
using TorchSharp;
using static GanCluster.Protocol.ArtifactProtocol;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Worker;

/// <summary>Per-worker settings (one worker per device).</summary>
public sealed record WorkerSettings(string WorkerId, string Device, string DataBind, string DataHost, TimeSpan RingTimeout, TimeSpan UploadTimeout);

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

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly WorkerSettings _settings;
    readonly IActorRef _coordinator;
    readonly torch.Device _device;
    RingListener? _listener;
    WorkerSession? _session;
    string? _runId;

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
        Receive<SaveArtifacts>(OnSave);
        Receive<FinishRun>(OnFinish);
        Receive<StopRun>(s =>
        {
            if (s.RunId != _runId) return;
            _log.Info("run {0} stopped: {1}", s.RunId, s.Reason);
            EndSession();
        });
    }

    protected override void PreStart()
    {
        _listener = RingListener.Start(IPAddress.Parse(_settings.DataBind));
        _log.Info("worker {0} on {1}; data plane {2}:{3}", _settings.WorkerId, _device, _settings.DataHost, _listener.Port);
        Timers.StartPeriodicTimer("register", new RegisterTick(), TimeSpan.Zero, TimeSpan.FromSeconds(2));
    }

    protected override void PostStop()
    {
        EndSession();
        _listener?.Dispose();
    }

    void OnPrepare(PrepareRun p)
    {
        EndSession();
        try
        {
            var spec = RunSpecValidator.Parse(p.SpecJson, $"run {p.RunId}");
            var peers = p.Peers.Select(x => new RingPeer(x.Rank, x.Host, x.Port)).ToList();
            var ring = RingAllReduce.Connect(_listener!, p.Session, p.Rank, peers, _settings.RingTimeout, log: m => _log.Warning("data plane: {0}", m));
            _session = new WorkerSession(spec, p.Rank, p.WorldSize, p.LocalBatches[p.Rank], _device, new RingReduce(ring));
            _runId = p.RunId;
            _log.Info("run {0}: rank {1} of {2}, local batch {3}, {4} samples", p.RunId, p.Rank, p.WorldSize, p.LocalBatches[p.Rank], _session.DatasetSize);
            Sender.Tell(new RunPrepared(p.RunId, p.Rank, _settings.WorkerId, _session.DatasetSize));
        }
        catch (Exception e)
        {
            _log.Error(e, "run {0}: could not prepare", p.RunId);
            EndSession();
            Sender.Tell(new PrepareFailed(p.RunId, p.Rank, _settings.WorkerId, e.Message));
        }
    }

    void OnExecute(ExecuteStep e)
    {
        if (!Current(e.RunId, e.Step)) return;
        var s = _session!;
        try
        {
            if (e.Commit is not null) s.Commit(e.Commit);
            var checksum = e.ReportChecksum ? s.Checksum() : null;
            var finite = s.ComputeAndReduce(e.Step);
            WindowStats? stats = null;
            if (e.ReportStats)
            {
                var w = s.Replica.TakeStats();
                stats = new WindowStats(w.LossD, w.LossG, w.DReal, w.DFake, w.GSteps);
            }
            Sender.Tell(new StepReduced(e.RunId, e.Step, s.Rank, s.LocalBatch, stats, checksum, NonFinite: !finite));
        }
        catch (Exception ex)
        {
            Fail(e.RunId, e.Step, ex);
        }
    }

    void OnSave(SaveArtifacts a)
    {
        if (!Current(a.RunId, a.Commit)) return;
        var s = _session!;
        try
        {
            s.Commit(a.Commit);
            s.SyncBuffers();
            if (s.Rank == 0) Upload(s, a.RunId, a.Iteration, a.Checkpoint, Sender);
        }
        catch (Exception ex)
        {
            Fail(a.RunId, a.Commit, ex);
        }
    }

    void OnFinish(FinishRun f)
    {
        if (!Current(f.RunId, f.Commit)) return;
        var s = _session!;
        try
        {
            s.Commit(f.Commit);
            s.SyncBuffers();
            var checksum = s.Checksum(withBuffers: true);
            _log.Info("run {0}: rank {1} final parameter checksum {2}", f.RunId, s.Rank, checksum);
            if (s.Rank == 0) Upload(s, f.RunId, f.Commit.Iteration + 1, checkpoint: true, Sender);
            Sender.Tell(new RunFinishedOnWorker(f.RunId, s.Rank, checksum));
        }
        catch (Exception ex)
        {
            Fail(f.RunId, f.Commit, ex);
        }
    }

    /// <summary>Writes samples (and a checkpoint) locally, then streams them to the seed in acknowledged chunks.</summary>
    void Upload(WorkerSession s, string runId, long iteration, bool checkpoint, IActorRef coordinator)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"gancluster-upload-{_settings.WorkerId}-{Guid.NewGuid():N}");
        try
        {
            var files = s.WriteArtifacts(folder, iteration, checkpoint);
            var buffer = new byte[ChunkBytes];
            foreach (var rel in files)
            {
                using var fs = File.OpenRead(Path.Combine(folder, rel));
                long offset = 0;
                do
                {
                    var n = fs.Read(buffer, 0, buffer.Length);
                    var last = fs.Position == fs.Length;
                    // Blocking here is fine: this thread is the worker's own, and the run waits for these files anyway.
                    coordinator.Ask<ChunkAck>(new FileChunk(runId, iteration, rel, offset, buffer[..n], last), _settings.UploadTimeout)
                        .GetAwaiter().GetResult();
                    offset += n;
                } while (fs.Position < fs.Length);
            }
            coordinator.Tell(new ArtifactsUploaded(runId, iteration, files.ToArray(), checkpoint));
        }
        finally
        {
            try { Directory.Delete(folder, true); } catch (IOException) { }
        }
    }

    bool Current(string runId, StepKey step)
    {
        if (runId == _runId && _session is not null) return true;
        _log.Warning("rejected {0} for run {1}: this worker is on run {2}", step, runId, _runId ?? "(none)");
        Sender.Tell(new StepFailed(runId, step, -1, $"worker {_settings.WorkerId} is not part of run {runId}"));
        return false;
    }

    void Fail(string runId, StepKey step, Exception ex)
    {
        _log.Error(ex, "run {0}: {1} failed", runId, step);
        var rank = _session?.Rank ?? -1;
        Sender.Tell(new StepFailed(runId, step, rank, ex.Message));
        EndSession();
    }

    void EndSession()
    {
        _session?.Dispose();
        _session = null;
        _runId = null;
    }
}
