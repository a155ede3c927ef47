using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using GanCluster.Protocol;
using static GanCluster.Protocol.WorkerProtocol;

namespace GanCluster.Actors.Coordinator;

/// <summary>
/// The cluster singleton: a thin shell around <see cref="CoordinatorState"/>. It turns messages, cluster events and
/// timers into inputs and carries out the effects.
/// </summary>
public sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly Dictionary<string, IActorRef> _workers = new();
    readonly HashSet<IActorRef> _watchers = [];
    readonly IActorRef _writer;
    CoordinatorState _state;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(CoordinatorSettings settings) => Akka.Actor.Props.Create(() => new CoordinatorActor(settings));

    public CoordinatorActor(CoordinatorSettings settings)
    {
        _state = CoordinatorState.Initial(settings);
        _writer = Context.ActorOf(Akka.Actor.Props.Create(() => new ArtifactWriter()), "artifacts");

        Receive<RegisterWorker>(r =>
        {
            _workers[r.WorkerId] = Sender;
            Context.Watch(Sender);
            Apply(new CoordinatorInput.WorkerUp(new WorkerInfo(r.WorkerId, r.Device, r.DataHost, r.DataPort)));
        });
        Receive<Terminated>(t =>
        {
            foreach (var id in _workers.Where(w => w.Value.Equals(t.ActorRef)).Select(w => w.Key).ToList())
            {
                _workers.Remove(id);
                Apply(new CoordinatorInput.WorkerDown(id, "its actor stopped or its node left"));
            }
            _watchers.Remove(t.ActorRef);
        });
        Receive<ClusterEvent.UnreachableMember>(u =>
        {
            foreach (var id in _workers.Where(w => w.Value.Path.Address.Equals(u.Member.Address)).Select(w => w.Key).ToList())
                Apply(new CoordinatorInput.WorkerDown(id, $"node {u.Member.Address} is unreachable"));
        });
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<RunProtocol.SubmitRun>(s =>
        {
            if (s.Watch) _watchers.Add(Sender);
            Apply(new CoordinatorInput.Submit(s.SpecJson, Random.Shared.NextInt64(1, long.MaxValue), DateTimeOffset.UtcNow));
        });
        Receive<RunProtocol.GetStatus>(_ =>
            Sender.Tell(new RunProtocol.StatusReported(_state.Phase.ToString(), _state.Run?.RunId, _state.Workers.Count,
                _state.Run?.Step.Iteration ?? 0, _state.LastError)));
        Receive<ArtifactProtocol.FileChunk>(c => _writer.Forward(c));
        Receive<ArtifactProtocol.ArtifactsUploaded>(u => _writer.Forward(u));
        Receive<ArtifactWriter.Done>(d => Apply(new CoordinatorInput.ArtifactsDone(d.Iteration, d.Error)));
        Receive<CoordinatorInput.TimerFired>(t => Apply(t));
        Receive<IGanClusterMessage>(m => Apply(new CoordinatorInput.FromWorker(m, DateTimeOffset.UtcNow)));
    }

    protected override void PreStart()
    {
        Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.UnreachableMember));
        _log.Info("coordinator started on {0}", Cluster.Get(Context.System).SelfAddress);
    }

    protected override void PostStop() => Cluster.Get(Context.System).Unsubscribe(Self);

    void Apply(CoordinatorInput input)
    {
        var (next, effects) = _state.Handle(input);
        _state = next;
        foreach (var effect in effects)
        {
            switch (effect)
            {
                case Effect.ToWorker w when _workers.TryGetValue(w.WorkerId, out var worker):
                    worker.Tell(w.Message, Self);
                    break;
                case Effect.Respond r:
                    Sender.Tell(r.Message, Self);
                    break;
                case Effect.Publish p:
                    foreach (var watcher in _watchers) watcher.Tell(p.Message, Self);
                    if (p.Message is RunProtocol.RunEnded) _watchers.Clear();
                    break;
                case Effect.Schedule s:
                    Timers.StartSingleTimer("phase", new CoordinatorInput.TimerFired(s.Token), s.Delay);
                    break;
                case Effect.StartOutput o:
                    _writer.Tell(new ArtifactWriter.Start(o.RunId, o.Output, o.SpecJson, _state.Run?.Spec.Checkpoint.Keep ?? 1));
                    break;
                case Effect.AppendMetrics m:
                    _writer.Tell(new ArtifactWriter.Append(m.Row));
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
            }
        }
    }
}
