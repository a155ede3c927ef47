using GanCluster.Engine.Coordinator;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using GanCluster.Actors.Telemetry;
using GanCluster.Protocol;
using System.Text.Json;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Coordinator;

/// <summary>
/// The cluster singleton: a thin shell around <see cref="CoordinatorState"/>. It turns messages, cluster events and
/// timers into inputs and carries out the effects. The run it drives is recorded in <c>stateDir</c>/active-run.json
/// (a shared volume when several seeds can host the singleton), so a coordinator started after a crash or on another
/// seed resumes it from its newest valid checkpoint.
/// </summary>
public sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public const string RunFile = "active-run.json";

    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Dictionary<string, IActorRef> _workers = new();
    readonly HashSet<IActorRef> _watchers = [];
    readonly IActorRef _checkpoints;
    readonly string _stateDir;
    CoordinatorState _state;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(CoordinatorSettings settings, string stateDir) => Akka.Actor.Props.Create(() => new CoordinatorActor(settings, stateDir));

    public CoordinatorActor(CoordinatorSettings settings, string stateDir)
    {
        _state = CoordinatorState.Initial(settings);
        _stateDir = Path.GetFullPath(stateDir);
        _checkpoints = Context.ActorOf(Akka.Actor.Props.Create(() => new CheckpointActor(null)), CheckpointActor.Name);

        Receive<RegisterWorker>(r =>
        {
            if (!FromWorkerMember(r) || !Claims(r)) return;
            _workers[r.WorkerId] = Sender;
            Context.Watch(Sender);
            Apply(new CoordinatorInput.WorkerUp(new WorkerInfo(r.WorkerId, r.Device, r.DataHost, r.DataPort), DateTimeOffset.UtcNow));
        });
        Receive<Terminated>(t =>
        {
            foreach (var id in _workers.Where(w => w.Value.Equals(t.ActorRef)).Select(w => w.Key).ToList())
            {
                _workers.Remove(id);
                Apply(new CoordinatorInput.WorkerDown(id, "its actor stopped or its node left", DateTimeOffset.UtcNow));
            }
            _watchers.Remove(t.ActorRef);
        });
        Receive<ClusterEvent.UnreachableMember>(u => Lost(u.Member.Address, $"node {u.Member.Address} is unreachable"));
        Receive<ClusterEvent.MemberRemoved>(m => Lost(m.Member.Address, $"node {m.Member.Address} was removed from the cluster"));
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<RunProtocol.SubmitRun>(s =>
        {
            if (OwnershipProblem(s.SpecJson) is { } problem)
            {
                Sender.Tell(new RunProtocol.SubmitNack("the output folder belongs to another run", [$"output: {problem}"]));
                _log.Warning("refused a run: output: {0}", problem);
                return;
            }
            if (s.Watch && _watchers.Add(Sender)) Context.Watch(Sender);
            Apply(new CoordinatorInput.Submit(s.SpecJson, Random.Shared.NextInt64(1, long.MaxValue / 2), DateTimeOffset.UtcNow));
        });
        Receive<RunProtocol.WatchRun>(w => Apply(new CoordinatorInput.Watch(w.RunId)));
        Receive<RunProtocol.CancelRun>(c => Apply(new CoordinatorInput.Cancel(c.RunId, c.By, DateTimeOffset.UtcNow)));
        Receive<RunProtocol.GetStatus>(_ => Sender.Tell(_state.Status()));
        // Reading every run folder's files takes disk time: off the mailbox, the answer piped to the client.
        Receive<RunProtocol.ListRuns>(_ =>
        {
            var (root, active) = (settings.OutputRoot ?? ".", _state.Busy ? _state.Run?.Output : null);   // an ended run stays in the state
            Task.Run(() =>
            {
                var (runs, omitted) = RunListing.Scan(root, active);
                return new RunProtocol.RunsListed(runs, omitted);
            }).PipeTo(Sender);
        });
        Receive<CoordinatorInput.CheckpointFound>(c => Apply(c));
        Receive<CheckpointActor.Done>(d =>
        {
            NodeMetrics.Saves.Add(1, new KeyValuePair<string, object?>("outcome", d.Error is null ? "written" : "failed"));
            Apply(new CoordinatorInput.ArtifactsDone(d.RunId, d.Iteration, d.Error, d.Quality));
        });
        Receive<CoordinatorInput.TimerFired>(t => Apply(t with { Now = DateTimeOffset.UtcNow }));
        // Everything else is a worker's: taken only from a cluster member with the worker role (Akka.Remote lets any
        // process that reaches the port address this actor directly, past the client gateway).
        Receive<IGanClusterMessage>(m => !FromWorkerMember(m) || !Claims(m), _ => { });
        // The store knows who uploads; it answers with Done like for any other failed save.
        Receive<ArtifactProtocol.ArtifactsFailed>(f => _checkpoints.Forward(f));
        Receive<IGanClusterMessage>(m => Apply(new CoordinatorInput.FromWorker(m, DateTimeOffset.UtcNow)));
    }

    /// <summary>Whether the sender is this node with the worker role, or a cluster member with it (logged when not).</summary>
    bool FromWorkerMember(IGanClusterMessage m)
    {
        var ok = WorkerMembers.Contains(Context.System, Sender.Path.Address);
        if (!ok) _log.Warning("refused {0} from {1}: not a cluster member with the worker role", m.GetType().Name, Sender.Path);
        return ok;
    }

    /// <summary>
    /// Whether a worker message's rank or worker id is its sender's own: a member cannot speak for another worker
    /// (fail its step, report its result, make it leave). Messages of another run than the one driven pass: the
    /// state ignores those by run id and formation.
    /// </summary>
    bool Claims(IGanClusterMessage m)
    {
        var ok = m switch
        {
            RegisterWorker r => r.WorkerId.StartsWith(HostPort(Sender.Path.Address) + "/", StringComparison.Ordinal),
            RunPrepared p => HoldsRank(p.RunId, p.Rank) && Is(p.WorkerId),
            PrepareFailed p => HoldsRank(p.RunId, p.Rank) && Is(p.WorkerId),
            SegmentDone d => HoldsRank(d.RunId, d.Rank),
            SegmentProgress p => HoldsRank(p.RunId, p.Rank),
            StepFailed f => HoldsRank(f.RunId, f.Rank),
            RunFinishedOnWorker f => HoldsRank(f.RunId, f.Rank),
            StepAborted a => Is(a.WorkerId),
            LeaveRun l => Is(l.WorkerId),
            _ => true,
        };
        if (!ok) _log.Warning("refused {0} from {1}: its rank or worker id is not the sender's", m.GetType().Name, Sender.Path);
        return ok;

        bool Is(string workerId) => _workers.TryGetValue(workerId, out var a) && a.Equals(Sender);
        bool HoldsRank(string runId, int rank) => _state.Run is not { } run || run.RunId != runId
            || (rank >= 0 && rank < run.Ranks.Length && Is(run.Ranks[rank]));
    }

    string HostPort(Address address) => address.HasLocalScope ? HostPort(Cluster.Get(Context.System).SelfAddress) : $"{address.Host}:{address.Port}";

    protected override void PreStart()
    {
        Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.UnreachableMember));
        _log.Info("coordinator started on {0}; run state in {1}", Cluster.Get(Context.System).SelfAddress, _stateDir);
        // Counters appear on the metrics endpoint at their first measurement: at 0 from the start, not only after a failure.
        NodeMetrics.WorkerFailures.Add(0);
        NodeMetrics.Reforms.Add(0);
        var record = ReadRunRecord();
        if (record is not null) Apply(new CoordinatorInput.Recover(record, Random.Shared.NextInt64(1, long.MaxValue / 2), DateTimeOffset.UtcNow));
    }

    protected override void PostStop() => Cluster.Get(Context.System).Unsubscribe(Self);

    void Lost(Address address, string why)
    {
        foreach (var id in _workers.Where(w => w.Value.Path.Address.Equals(address)).Select(w => w.Key).ToList())
        {
            _workers.Remove(id);
            Apply(new CoordinatorInput.WorkerDown(id, why, DateTimeOffset.UtcNow));
        }
    }

    RunRecord? ReadRunRecord()
    {
        var path = Path.Combine(_stateDir, RunFile);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<RunRecord>(File.ReadAllText(path), RunSpec.Json);
        }
        catch (JsonException e)
        {
            _log.Warning("ignoring {0}: {1}", path, e.Message);
            return null;
        }
    }

    void Apply(CoordinatorInput input)
    {
        var (next, effects) = _state.Handle(input);
        Measure(_state, next, input);
        _state = next;
        var followUps = new List<CoordinatorInput>();
        foreach (var effect in effects)
        {
            switch (effect)
            {
                case Effect.ToWorker w when _workers.TryGetValue(w.WorkerId, out var worker):
                    // The store takes uploads only from the node of the worker asked to save as rank 0.
                    if (w.Message is SaveArtifacts or FinishRun && _state.Run is { Ranks.Length: > 0 } run && run.Ranks[0] == w.WorkerId)
                        _checkpoints.Tell(new CheckpointActor.AllowUploads(run.RunId, worker.Path.Address));
                    worker.Tell(w.Message, Self);
                    break;
                case Effect.Respond r:
                    Sender.Tell(r.Message, Self);
                    break;
                case Effect.AddWatcher:
                    if (_watchers.Add(Sender)) Context.Watch(Sender);
                    break;
                case Effect.Publish p:
                    foreach (var watcher in _watchers) watcher.Tell(p.Message, Self);
                    if (p.Message is RunProtocol.RunEnded) _watchers.Clear();
                    break;
                case Effect.Schedule s:
                    Timers.StartSingleTimer("phase", new CoordinatorInput.TimerFired(s.Token), s.Delay);
                    break;
                case Effect.StartOutput o:
                    _checkpoints.Tell(new CheckpointActor.Start(o.RunId, o.Output, o.SpecJson, _state.Run?.Spec.Checkpoint.Keep ?? 1, o.ResumeAt,
                        _state.Run?.Spec.Dataset.Kind ?? ""));
                    break;
                case Effect.AppendMetrics m:
                    _checkpoints.Tell(new CheckpointActor.Append(m.Row, m.AllReduceMs));
                    _log.Info(m.Row.ToConsole(_state.Run?.Spec.Training.Iterations ?? 0));
                    break;
                case Effect.Log { Warning: true } l:
                    _log.Warning(l.Text);
                    break;
                case Effect.Log l:
                    _log.Info(l.Text);
                    break;
                case Effect.Committed c:
                    _log.Debug("committed {0} on ranks {1}", c.Step, string.Join(",", c.Ranks));
                    break;
                case Effect.PersistRun p:
                    Directory.CreateDirectory(_stateDir);
                    var tmp = Path.Combine(_stateDir, $"{RunFile}.{Environment.ProcessId}.tmp");   // seeds may share the folder
                    File.WriteAllText(tmp, JsonSerializer.Serialize(p.Record with { Output = Path.GetFullPath(p.Record.Output) }, RunSpec.Json));
                    File.Move(tmp, Path.Combine(_stateDir, RunFile), overwrite: true);
                    break;
                case Effect.ForgetRun:
                    File.Delete(Path.Combine(_stateDir, RunFile));
                    break;
                case Effect.FindCheckpoint f:
                    // Verifying a checkpoint hashes every file (seconds for a large model): off the singleton's thread.
                    var output = f.Output;
                    Task.Run(() => FindCheckpoint(output)).PipeTo(Self, failure: e =>
                        new CoordinatorInput.CheckpointFound(null, null, [], output, (e is AggregateException { InnerException: { } inner } ? inner : e).Message));
                    break;
            }
        }
        foreach (var input2 in followUps) Apply(input2);
    }

    /// <summary>Metrics read off a transition: new failures, a new formation of the same run, the end of a save's stall.</summary>
    static void Measure(CoordinatorState before, CoordinatorState after, CoordinatorInput input)
    {
        if (after.Run is not { } run || before.Run is not { } was || was.RunId != run.RunId) return;   // a restored run's history is not new
        // The list keeps the last hour's failures only: count the entries newer than the newest one before.
        var newest = was.Failures.IsEmpty ? DateTimeOffset.MinValue : was.Failures.Max();
        var failures = run.Failures.Count(t => t > newest);
        if (failures > 0) NodeMetrics.WorkerFailures.Add(failures);
        if (was.Formation != run.Formation) NodeMetrics.Reforms.Add(1);
        if (input is CoordinatorInput.FromWorker { Message: ArtifactsSnapshotted } f && before.Stage is Stage.Saving saving && after.Stage is not Stage.Saving)
            NodeMetrics.SaveStall.Record((f.Now - saving.StartedAt).TotalSeconds);
    }

    /// <summary>
    /// A run folder belongs to its run (file IO, so here and not in the pure state): another spec may not resume, prune
    /// or trim it. Null when the spec is not valid (the state says why) or the folder is free or its own.
    /// </summary>
    string? OwnershipProblem(string specJson)
    {
        RunSpec spec;
        try { spec = RunSpecValidator.Parse(specJson, "(submitted)", checkPaths: false, _state.Settings.MemoryLimitBytes); }
        catch (InvalidRunSpecException) { return null; }
        var folder = _state.Settings.OutputRoot is { } root ? RunFolder.UnderRoot(root, spec.ResolvedOutput) : spec.ResolvedOutput;
        return folder is null ? null : RunFolder.OwnershipProblem(folder, spec);
    }

    static CoordinatorInput.CheckpointFound FindCheckpoint(string output)
    {
        var dir = CheckpointStore.LatestValid(output, out var skipped);
        CoordinatorCheckpoint? state = null;
        if (dir is not null)
        {
            var json = Path.Combine(dir, "coordinator.json");
            // A local run's checkpoint has no coordinator.json: its state.json gives the iteration.
            state = File.Exists(json)
                ? CoordinatorCheckpoint.FromJson(File.ReadAllText(json))
                : new CoordinatorCheckpoint("", CheckpointStore.ReadState(dir).Iteration, 0, 1, 0, [], 0);
        }
        return new CoordinatorInput.CheckpointFound(dir, state, [.. skipped], output);
    }
}
