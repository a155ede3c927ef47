using GanCluster.Engine.Coordinator;
using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Configuration;
using GanCluster.Actors;
using GanCluster.Actors.Coordinator;
using GanCluster.Actors.Security;
using GanCluster.Protocol;

namespace GanCluster.Cli;

/// <summary>A client ActorSystem with a ClusterClient to a seed's receptionist; replies arrive in <see cref="Next"/>.</summary>
sealed class ClusterConnection : IClusterLink
{
    readonly ActorSystem _system;
    readonly IActorRef _listener;
    readonly ClusterClientSettings _settings;
    volatile IActorRef _client;
    int _clients;
    readonly Channel<object> _inbox = Channel.CreateUnbounded<object>();

    /// <param name="cluster">One or more seeds, <c>host:port[,host:port]</c>: the client's first contacts.</param>
    /// <param name="credentials">The cluster's credentials (mutual TLS); null connects in the clear to an insecure cluster.</param>
    public ClusterConnection(string cluster, TimeSpan connectTimeout, ClusterCredentials? credentials)
    {
        var seeds = HostPort.ParseList(cluster, out var bad);
        if (bad.Count > 0) throw new UsageException($"--cluster {bad[0]}: expected host:port");
        if (seeds.Count == 0) throw new UsageException("--cluster: expected host:port[,host:port]");
        var contacts = seeds.Select(seed =>
            (seed.Host, Path: $"{ClusterHocon.NodeAddress(credentials is not null, seed.ToString())}/system/receptionist")).ToList();
        Receptionist = string.Join(", ", contacts.Select(c => c.Path));
        ConnectTimeout = connectTimeout;
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp { hostname = "{{LocalAddressFor(contacts[0].Host)}}", port = 0 }
            # Off: a seed going away makes Akka log "Disassociated" with a stack trace; this client reports contact itself.
            akka.loglevel = OFF
            akka.stdout-loglevel = OFF
            akka.cluster.client.reconnect-timeout = {{Math.Max(1, (int)connectTimeout.TotalSeconds)}}s
            """);
        _system = ClusterHocon.CreateSystem("gancluster-client", config, credentials, refused: why =>
        {
            _refusedBy = why;
            _inbox.Writer.TryWrite(new CertificateRefused(why));   // wakes First(): another certificate will not change
        });
        Secure = credentials is not null;
        _settings = ClusterClientSettings.Create(_system).WithInitialContacts(contacts.Select(c => ActorPath.Parse(c.Path)).ToImmutableHashSet());
        _listener = _system.ActorOf(Props.Create(() => new Listener(_inbox.Writer)));
        _client = NewClient();
    }

    IActorRef NewClient()
    {
        var client = _system.ActorOf(ClusterClient.Props(_settings), $"client-{++_clients}");
        _listener.Tell(new Listener.WatchClient(client));
        return client;
    }

    /// <summary>After <see cref="ContactLost"/>: a new ClusterClient that starts again from the first contacts.</summary>
    public void Reconnect() => _client = NewClient();

    public string Receptionist { get; }
    /// <summary>Whether this client connects over mutual TLS with the cluster's certificate.</summary>
    public bool Secure { get; }
    /// <summary>The client's own actor system (tests use it to address a seed's actors directly, as a hostile peer would).</summary>
    internal ActorSystem System => _system;
    public TimeSpan ConnectTimeout { get; }

    public void Send(IGanClusterMessage message) => _client.Tell(new ClusterClient.Send(ClientGateway.Path, message), _listener);

    /// <summary>
    /// The first reply, or a clear error naming the address: at once when this client refused the seed's certificate,
    /// else when the cluster does not answer in time.
    /// </summary>
    public object First()
    {
        var m = Next(ConnectTimeout);
        if (m is not null and not ContactLost and not CertificateRefused) return m;
        throw new UsageException($"could not reach a GanCluster seed at {Receptionist}: " + (_refusedBy is { } why
            ? $"the seed's certificate is not the one these credentials pin ({why}): they were made for another cluster"
            : $"no answer within {ConnectTimeout.TotalSeconds:F0} s (is a seed running there{(Secure ? ", and were these credentials made for its cluster" : ", and was it started with Node:Insecure=true")}?)"));
    }

    // Why this client refused a seed's certificate, if it did (set on a transport thread).
    volatile string? _refusedBy;

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

    /// <summary>In the inbox when the ClusterClient gave up: no contact point answered for <c>reconnect-timeout</c>.</summary>
    public sealed record ContactLost;

    /// <summary>In the inbox when this client refused a seed's certificate (another cluster's): the first call fails at once.</summary>
    public sealed record CertificateRefused(string Why);

    sealed class Listener : ReceiveActor
    {
        public sealed record WatchClient(IActorRef Client);

        public Listener(ChannelWriter<object> writer)
        {
            Receive<WatchClient>(w => Context.Watch(w.Client));
            Receive<Terminated>(_ => writer.TryWrite(new ContactLost()));
            ReceiveAny(m => writer.TryWrite(m));
        }
    }
}
