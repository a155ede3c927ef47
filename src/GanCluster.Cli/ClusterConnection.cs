using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Configuration;
using GanCluster.Actors;
using GanCluster.Actors.Coordinator;
using GanCluster.Protocol;

namespace GanCluster.Cli;

/// <summary>A client ActorSystem with a ClusterClient to a seed's receptionist; replies arrive in <see cref="Next"/>.</summary>
sealed class ClusterConnection : IDisposable
{
    readonly ActorSystem _system;
    readonly IActorRef _client, _listener;
    readonly Channel<object> _inbox = Channel.CreateUnbounded<object>();

    public ClusterConnection(string cluster, TimeSpan connectTimeout)
    {
        var i = cluster.LastIndexOf(':');
        if (i <= 0 || !int.TryParse(cluster[(i + 1)..], out var port)) throw new UsageException($"--cluster {cluster}: expected host:port");
        var host = cluster[..i];
        Receptionist = $"akka.tcp://{ClusterHocon.SystemName}@{host}:{port}/system/receptionist";
        ConnectTimeout = connectTimeout;
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = "{{LocalAddressFor(host)}}", port = 0 }
            akka.loglevel = ERROR
            akka.cluster.client.reconnect-timeout = {{Math.Max(1, (int)connectTimeout.TotalSeconds)}}s
            """).WithFallback(ClusterHocon.Serialization);
        _system = ActorSystem.Create("gancluster-client", config);
        _listener = _system.ActorOf(Props.Create(() => new Listener(_inbox.Writer)));
        var settings = ClusterClientSettings.Create(_system).WithInitialContacts([ActorPath.Parse(Receptionist)]);
        _client = _system.ActorOf(ClusterClient.Props(settings), "client");
    }

    public string Receptionist { get; }
    public TimeSpan ConnectTimeout { get; }

    public void Send(IGanClusterMessage message) => _client.Tell(new ClusterClient.Send(ClientGateway.Path, message), _listener);

    /// <summary>The first reply, or a clear error naming the address when the cluster does not answer in time.</summary>
    public object First() => Next(ConnectTimeout)
        ?? throw new UsageException($"could not reach a GanCluster seed at {Receptionist}: no answer within {ConnectTimeout.TotalSeconds:F0} s (is a seed running there?)");

    public object? Next(TimeSpan timeout)
    {
        using var cts = timeout == Timeout.InfiniteTimeSpan ? new CancellationTokenSource() : new CancellationTokenSource(timeout);
        try { return _inbox.Reader.ReadAsync(cts.Token).AsTask().GetAwaiter().GetResult(); }
        catch (OperationCanceledException) { return null; }
    }

    /// <summary>The local address that routes to <paramref name="host"/>, so the cluster can answer this client.</summary>
    static string LocalAddressFor(string host)
    {
        try
        {
            var target = Dns.GetHostAddresses(host).First(a => a.AddressFamily == AddressFamily.InterNetwork);
            if (IPAddress.IsLoopback(target)) return "127.0.0.1";
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            probe.Connect(target, 9);   // UDP connect sends nothing; it only picks the route
            return ((IPEndPoint)probe.LocalEndPoint!).Address.ToString();
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException)
        {
            throw new UsageException($"--cluster {host}: cannot resolve or route to it ({e.Message})");
        }
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(5));

    sealed class Listener : ReceiveActor
    {
        public Listener(ChannelWriter<object> writer) => ReceiveAny(m => writer.TryWrite(m));
    }
}
