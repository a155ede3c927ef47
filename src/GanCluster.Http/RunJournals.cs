using System.Threading.Channels;
using Akka.Actor;
using GanCluster.Protocol;

namespace GanCluster.Http;

/// <summary>
/// What the runs submitted through this API said since their submit: the coordinator takes the submitting actor as a
/// watcher in the same step as the run (as <c>submit --wait</c> over Akka), so nothing is missed, and an event stream
/// opened later (the CLI's follow, the dashboard) replays the run from its first line before going live. Runs
/// submitted otherwise are followed from the moment a stream opens.
/// </summary>
public sealed class RunJournals
{
    /// <summary>Ended runs kept for late streams; the oldest ended one goes first.</summary>
    const int Keep = 16;
    /// <summary>Events kept per run; past it the oldest progress lines go (notes and the end stay).</summary>
    const int MaxEvents = 5000;

    readonly object _lock = new();
    readonly Dictionary<string, Journal> _runs = new();
    readonly List<string> _order = [];

    public bool TryGet(string runId, out Journal journal)
    {
        lock (_lock) return _runs.TryGetValue(runId, out journal!);
    }

    Journal Open(string runId)
    {
        lock (_lock)
        {
            var journal = new Journal(runId);
            _runs[runId] = journal;
            _order.Add(runId);
            while (_order.Count > Keep && _order.FirstOrDefault(id => _runs[id].Ended) is { } old)
            {
                _order.Remove(old);
                _runs.Remove(old);
            }
            return journal;
        }
    }

    /// <summary>Submits <paramref name="specJson"/> through a journaling actor; the coordinator's first answer (null: none in time).</summary>
    public async Task<object?> Submit(ActorSystem system, IActorRef coordinator, string specJson, TimeSpan timeout)
    {
        var answer = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        var submitter = system.ActorOf(Props.Create(() => new Submitter(coordinator, specJson, this, answer)));
        var done = await Task.WhenAny(answer.Task, Task.Delay(timeout));
        if (done == answer.Task) return answer.Task.Result;
        system.Stop(submitter);
        return null;
    }

    /// <summary>One run's events, in order, with the coordinator's states for it.</summary>
    public sealed class Journal(string runId)
    {
        readonly object _lock = new();
        readonly LinkedList<object> _events = new();
        readonly List<ChannelWriter<object>> _subscribers = [];
        // A run submitted is Starting; each later state the coordinator reports is an event of its own, so every
        // subscriber sees the same sequence, live or replayed.
        readonly RunProtocol.WatchAck _initial = new(runId, RunState.Starting, 0);
        RunState _state = RunState.Starting;

        public bool Ended { get; private set; }

        /// <summary>The first state, then every event so far (later states among them), then the live ones; completed after the end.</summary>
        public ChannelReader<object> Subscribe(CancellationToken ct)
        {
            var channel = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
            lock (_lock)
            {
                channel.Writer.TryWrite(_initial);
                foreach (var e in _events) channel.Writer.TryWrite(e);
                if (Ended) channel.Writer.TryComplete();
                else
                {
                    _subscribers.Add(channel.Writer);
                    ct.Register(() => { lock (_lock) _subscribers.Remove(channel.Writer); });
                }
            }
            return channel.Reader;
        }

        internal void Add(object message)
        {
            lock (_lock)
            {
                if (Ended) return;
                if (message is RunProtocol.WatchAck ack)
                {
                    if (ack.State == _state) return;
                    _state = ack.State;
                }
                _events.AddLast(message);
                if (_events.Count > MaxEvents && _events.FirstOrDefault(e => e is RunProtocol.ProgressReported) is { } oldest) _events.Remove(oldest);
                Ended = message is RunProtocol.RunEnded or RunProtocol.WatchNack;
                foreach (var s in _subscribers)
                {
                    s.TryWrite(message);
                    if (Ended) s.TryComplete();
                }
                if (Ended) _subscribers.Clear();
            }
        }
    }

    /// <summary>Submits with Watch and records what the coordinator says about the run until it ends.</summary>
    sealed class Submitter : ReceiveActor, IWithTimers
    {
        static string? RunIdOf(object message) => message switch
        {
            RunProtocol.ProgressReported p => p.RunId,
            RunProtocol.RunNoted n => n.RunId,
            RunProtocol.RunEnded e => e.RunId,
            RunProtocol.WatchAck w => w.RunId,
            RunProtocol.WatchNack x => x.RunId,
            _ => null,
        };

        sealed record Rewatch;

        readonly IActorRef _coordinator;
        readonly string _specJson;

        public ITimerScheduler Timers { get; set; } = null!;

        protected override void PreStart() => _coordinator.Tell(new RunProtocol.SubmitRun(_specJson, Watch: true));

        public Submitter(IActorRef coordinator, string specJson, RunJournals journals, TaskCompletionSource<object> answer)
        {
            (_coordinator, _specJson) = (coordinator, specJson);
            Journal? journal = null;
            string? runId = null;
            Receive<RunProtocol.SubmitAck>(a => runId is null, a =>
            {
                // Registered before the client learns the run id: its stream finds the journal.
                runId = a.RunId;
                journal = journals.Open(a.RunId);
                answer.TrySetResult(a);
                coordinator.Tell(new RunProtocol.WatchRun(a.RunId));   // the current state, for the journal's first event
                Timers.StartPeriodicTimer("rewatch", new Rewatch(), TimeSpan.FromSeconds(10));
            });
            Receive<RunProtocol.SubmitNack>(n =>
            {
                answer.TrySetResult(n);
                Context.Stop(Self);
            });
            Receive<Rewatch>(_ => coordinator.Tell(new RunProtocol.WatchRun(runId!)));
            Receive<IGanClusterMessage>(_ => journal is not null, m =>
            {
                if (RunIdOf(m) is { } id && id != runId) return;
                journal!.Add(m);
                if (journal.Ended) Context.Stop(Self);
            });
        }
    }
}
