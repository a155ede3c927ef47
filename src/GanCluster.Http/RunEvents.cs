using System.Text.Json;
using System.Threading.Channels;
using Akka.Actor;
using GanCluster.Protocol;
using Microsoft.AspNetCore.Http;

namespace GanCluster.Http;

/// <summary>
/// <c>GET /api/runs/{runId}/events</c>: one temporary actor per stream follows the run as a CLI does (WatchRun, again
/// every 10 s so that it keeps following a coordinator that moved to another seed) and hands what the coordinator sends
/// to the request through a channel; the request writes it as server-sent events.
/// </summary>
public static class RunEvents
{
    static readonly TimeSpan FirstAnswer = TimeSpan.FromSeconds(15);
    static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);

    public static async Task Stream(HttpContext context, string runId, ActorSystem system, IActorRef coordinator, CancellationToken stopping)
    {
        var inbox = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
        var follower = system.ActorOf(Props.Create(() => new Follower(coordinator, runId, inbox.Writer)));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        try
        {
            var first = await Read(inbox.Reader, FirstAnswer, cts.Token);
            switch (first)
            {
                case null:
                    await ApiRoutes.Error(context, StatusCodes.Status503ServiceUnavailable,
                        $"the coordinator did not answer within {FirstAnswer.TotalSeconds:F0} s (is the cluster forming, or a seed taking it over?)");
                    return;
                case RunProtocol.WatchNack nack:
                    await ApiRoutes.Error(context, StatusCodes.Status404NotFound, nack.Reason);
                    return;
            }
            context.Response.ContentType = "text/event-stream";
            context.Response.Headers.CacheControl = "no-cache";
            context.Response.Headers["X-Accel-Buffering"] = "no";   // proxies: pass each event at once
            RunState? state = null;
            for (var message = first; !cts.IsCancellationRequested; message = await Read(inbox.Reader, KeepAlive, cts.Token))
            {
                switch (message)
                {
                    case null:
                        await context.Response.WriteAsync(": keep-alive\n\n", cts.Token);   // a comment: idle connections stay open through proxies
                        break;
                    case RunProtocol.WatchAck a when a.State != state:
                        state = a.State;
                        await Write(context, HttpApi.Events.State, new HttpApi.StateEvent(runId, a.State, a.Iteration), cts.Token);
                        break;
                    case RunProtocol.ProgressReported p when p.RunId == runId:
                        await Write(context, HttpApi.Events.Progress, p, cts.Token);
                        break;
                    case RunProtocol.RunNoted n when n.RunId == runId:
                        await Write(context, HttpApi.Events.Note, n, cts.Token);
                        break;
                    case RunProtocol.RunEnded e when e.RunId == runId:
                        // A run already over answers the watch with its end: the coordinator is idle again.
                        if (state is null) await Write(context, HttpApi.Events.State, new HttpApi.StateEvent(runId, RunState.Idle, 0), cts.Token);
                        await Write(context, HttpApi.Events.Ended, e, cts.Token);
                        return;
                    case RunProtocol.WatchNack n:
                        // The coordinator lost the run (it moved and the run ended meanwhile): nothing more will come.
                        await Write(context, HttpApi.Events.Error, new HttpApi.ApiError(n.Reason), cts.Token);
                        return;
                }
            }
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            // The client went away, or the node is stopping.
        }
        catch (ChannelClosedException)
        {
            // The follower stopped: the actor system is shutting down.
        }
        finally
        {
            system.Stop(follower);
        }
    }

    static async Task Write(HttpContext context, string name, object data, CancellationToken ct)
    {
        var json = JsonSerializer.Serialize(data, data.GetType(), HttpApi.Json);
        await context.Response.WriteAsync($"event: {name}\ndata: {json}\n\n", ct);
        await context.Response.Body.FlushAsync(ct);
    }

    /// <summary>The next message, or null when none came within <paramref name="timeout"/>.</summary>
    static async Task<object?> Read(ChannelReader<object> reader, TimeSpan timeout, CancellationToken ct)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(timeout);
        try
        {
            return await reader.ReadAsync(wait.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>The coordinator's watcher for one stream; its replies go into the channel.</summary>
    sealed class Follower : ReceiveActor, IWithTimers
    {
        sealed record Rewatch;

        readonly IActorRef _coordinator;
        readonly string _runId;
        readonly ChannelWriter<object> _writer;

        public ITimerScheduler Timers { get; set; } = null!;

        public Follower(IActorRef coordinator, string runId, ChannelWriter<object> writer)
        {
            (_coordinator, _runId, _writer) = (coordinator, runId, writer);
            Receive<Rewatch>(_ => _coordinator.Tell(new RunProtocol.WatchRun(_runId)));
            ReceiveAny(m => _writer.TryWrite(m));
        }

        protected override void PreStart()
        {
            _coordinator.Tell(new RunProtocol.WatchRun(_runId));
            Timers.StartPeriodicTimer("rewatch", new Rewatch(), TimeSpan.FromSeconds(10));
        }

        protected override void PostStop() => _writer.TryComplete();
    }
}
