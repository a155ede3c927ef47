using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Cluster;
using Akka.DependencyInjection;
using Akka.Discovery.Config.Hosting;
using Akka.Event;
using Akka.Discovery.KubernetesApi;
using Akka.Hosting;
using Akka.Management;
using Akka.Management.Cluster.Bootstrap;
using Akka.Management.Dsl;
using GanCluster.Actors;
using GanCluster.Actors.Security;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace GanCluster.Node.Hosting;

/// <summary>
/// Akka.Management's HTTP endpoint (Node:ManagementPort) with the node's health checks at /alive and /ready, and, with
/// Node:Discovery config or kubernetes, Cluster Bootstrap: the node finds the seeds through Akka.Discovery and joins
/// their cluster, or (a seed only) the lowest seed forms it.
/// </summary>
public static class ManagementHosting
{
    /// <summary>The port name of the seeds' management port in their pod spec (Discovery=kubernetes).</summary>
    public const string KubernetesPortName = "management";
    /// <summary>How long a restarted seed tries the members it remembers before it bootstraps.</summary>
    public static readonly TimeSpan RememberedJoinTimeout = TimeSpan.FromSeconds(30);
    static readonly TimeSpan CoordinatorAnswerTimeout = TimeSpan.FromSeconds(3);

    /// <summary>Why the management endpoint cannot listen on Node:ManagementHost:ManagementPort, or null; checked before the node starts.</summary>
    public static string? PortProblem(NodeOptions options)
    {
        if (options.ManagementPort == 0) return null;
        var host = IPAddress.Parse(options.EffectiveManagementHost);
        try
        {
            var listener = new TcpListener(host, options.ManagementPort);
            listener.Start();
            listener.Stop();
            return null;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && !SomeoneListens(host, options.ManagementPort))
        {
            return null;   // only the closed connections of a previous run (TIME_WAIT): ServeAsync waits them out
        }
        catch (SocketException e)
        {
            return $"Node:ManagementPort {options.ManagementPort} on {options.EffectiveManagementHost} cannot be listened on ({e.SocketErrorCode}: {e.Message}); " +
                   "another program holds it, or choose another port";
        }
    }

    static bool SomeoneListens(IPAddress host, int port)
    {
        using var client = new TcpClient();
        try
        {
            var target = host.Equals(IPAddress.Any) ? IPAddress.Loopback : host.Equals(IPAddress.IPv6Any) ? IPAddress.IPv6Loopback : host;
            return client.ConnectAsync(target, port).Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
            return false;   // refused: nothing listens
        }
    }

    /// <summary>
    /// The host other nodes reach the management endpoint at, which Cluster Bootstrap also matches against the discovered
    /// contact points to recognise itself: Node:ManagementHost when it names one address, else Node:PublicHost when it
    /// is an IP address, else this machine's first non-loopback IPv4 address (a pod's own IP, which Kubernetes discovery returns).
    /// </summary>
    public static string AdvertisedHost(NodeOptions options)
    {
        var bind = IPAddress.Parse(options.EffectiveManagementHost);
        if (!bind.Equals(IPAddress.Any) && !bind.Equals(IPAddress.IPv6Any)) return bind.ToString();
        if (IPAddress.TryParse(options.EffectivePublicHost, out var publicIp) && !publicIp.Equals(IPAddress.Any)) return publicIp.ToString();
        var own = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up && n.NetworkInterfaceType != NetworkInterfaceType.Loopback)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
        return own?.ToString() ?? Dns.GetHostName();
    }

    public static AkkaConfigurationBuilder WithManagement(this AkkaConfigurationBuilder akka, NodeOptions options, ClusterCredentials? credentials, ILogger log)
    {
        // The checks run only when /alive or /ready is asked; without Node:ManagementPort nothing asks.
        akka.WithHealthCheck("actor-system", new ActorSystemAliveCheck(), tags: [HealthTags.Liveness]);
        if (options.IsSeed) akka.WithHealthCheck("coordinator", new CoordinatorReadyCheck(CoordinatorAnswerTimeout), tags: [HealthTags.Readiness]);
        if (options.IsWorker) akka.WithHealthCheck("workers-registered", new WorkersRegisteredCheck(), tags: [HealthTags.Readiness]);
        if (options.ManagementPort == 0) return akka;

        var advertised = AdvertisedHost(options);
        akka.WithAkkaManagement(new AkkaManagementOptions
        {
            HostName = advertised,
            Port = options.ManagementPort,
            BindHostName = options.EffectiveManagementHost,
            BindPort = options.ManagementPort,
            RouteProvidersReadOnly = true,
        }, autoStart: false);
        // Read-only routes only: the endpoint has no authentication. The bootstrap's /bootstrap/seed-nodes only with
        // bootstrap (an empty class name drops a provider Akka.Management's reference.conf lists).
        akka.AddHocon($$"""
            akka.management.http.routes {
              gancluster-health = "{{typeof(HealthRoutes).FullName}}, {{typeof(HealthRoutes).Assembly.GetName().Name}}"
              remote-address = ""
              cluster-client-receptionist = ""
              {{(options.UsesBootstrap ? "" : "cluster-bootstrap = \"\"")}}
            }
            """, HoconAddMode.Prepend);

        if (options.Discovery == "config")
        {
            akka.WithConfigDiscovery(new ConfigServiceDiscoveryOptions
            {
                Services = [new Service { Name = options.DiscoveryService, Endpoints = options.DiscoveryEndpointList.Select(e => e.ToString()).ToArray() }],
            });
        }
        else if (options.Discovery == "kubernetes")
        {
            akka.WithKubernetesDiscovery(new KubernetesDiscoveryOptions
            {
                PodLabelSelector = options.DiscoveryLabelSelector,
                PodNamespace = string.IsNullOrWhiteSpace(options.DiscoveryNamespace) ? null : options.DiscoveryNamespace,
            });
        }
        if (options.UsesBootstrap)
        {
            akka.WithClusterBootstrap(new ClusterBootstrapOptions
            {
                // Only seeds may form a cluster: a worker is never a contact point, and this keeps it from forming one anyway.
                NewClusterEnabled = options.IsSeed,
                ContactPointDiscovery =
                {
                    ServiceName = options.DiscoveryService,
                    PortName = options.Discovery == "kubernetes" ? KubernetesPortName : null,
                    RequiredContactPointsNr = options.RequiredContacts,
                },
                // Several seeds on one host (loopback) differ only in their port: keep them all.
                ContactPoint = { FilterOnFallbackPort = false },
            }, autoStart: false);
        }

        return akka.WithActors((system, registry) =>
        {
            var remembered = options.IsSeed && options.UsesBootstrap ? MemberBook.Read(options.StateDir) : [];
            _ = Task.Run(() => StartAsync(system, options, credentials, remembered, advertised, log));
        });
    }

    static async Task StartAsync(ActorSystem system, NodeOptions options, ClusterCredentials? credentials, IReadOnlyList<string> remembered,
        string advertised, ILogger log)
    {
        try
        {
            await ServeAsync(system, options);
            log.LogInformation("management: http://{Host}:{Port} (/alive, /ready{Bootstrap}), advertised as {Advertised}", options.EffectiveManagementHost,
                options.ManagementPort, options.UsesBootstrap ? ", /bootstrap/seed-nodes" : "", advertised);
        }
        catch (Exception e)
        {
            // Without its endpoint a node is never ready and cannot be found: stop it (Program exits 2 with the reason).
            log.LogError(e, "Node:ManagementPort {Port} on {Host}: the management endpoint could not start; stopping", options.ManagementPort, options.EffectiveManagementHost);
            var lifetime = DependencyResolver.For(system).Resolver.GetService<IHostApplicationLifetime>();
            await CoordinatedShutdown.Get(system).Run(new EndpointFailed($"Node:ManagementPort {options.ManagementPort} on {options.EffectiveManagementHost}: {e.GetBaseException().Message}"));
            lifetime?.StopApplication();
            return;
        }
        if (!options.UsesBootstrap) return;

        var cluster = Cluster.Get(system);
        if (remembered.Count > 0 && await RejoinRememberedAsync(cluster, credentials, remembered, log)) return;
        // What Akka uses once every HOCON layer is merged: a worker must show new-cluster-enabled off.
        var newCluster = system.Settings.Config.GetBoolean("akka.management.cluster.bootstrap.new-cluster-enabled");
        log.LogInformation("bootstrap: looking up {Service} by {Discovery} discovery; {Required} seed(s) must answer before one forms a new cluster " +
                           "(new-cluster-enabled {NewCluster})", options.DiscoveryService, options.Discovery, options.RequiredContacts, newCluster ? "on" : "off");
        await ClusterBootstrap.Get(system).Start();
    }

    /// <summary>Why a node stopped: its management endpoint could not start.</summary>
    public sealed class EndpointFailed(string message) : CoordinatedShutdown.Reason
    {
        public string Message { get; } = message;
        public override int ExitCode => 2;
        public override string ToString() => Message;
    }

    /// <summary>
    /// Serves Akka.Management's routes (every configured route provider; this also tells Cluster Bootstrap its own contact
    /// point) with Akka.Http.Shim's router on Ceen's server, until the actor system has terminated. Not through
    /// AkkaManagement.Start(): Akka.Http.Shim 1.5.73 calls Ceen.Httpd 0.9.9's ListenAsync(IPEndPoint, ...), and only
    /// Ceen.Httpd 0.9.10 (ListenAsync(EndPoint, ...)) can be restored, so its own start fails with MissingMethodException.
    /// </summary>
    static async Task ServeAsync(ActorSystem system, NodeOptions options)
    {
        var routes = AkkaManagement.Get(system).Routes();
        var config = new Ceen.Httpd.ServerConfig { Router = new Akka.Http.Dsl.AkkaRouter(system, routes) };
        var stop = new CancellationTokenSource();
        var endpoint = new IPEndPoint(IPAddress.Parse(options.EffectiveManagementHost), options.ManagementPort);
        // /alive keeps answering (503) while the node shuts down; the endpoint closes with the actor system.
        _ = system.WhenTerminated.ContinueWith(_ => stop.Cancel(), TaskScheduler.Default);
        // Ceen binds without SO_REUSEADDR, and it closes every connection itself: a node restarted at once (a crashed
        // container in the same pod) finds the port held by its predecessor's closed connections until their TIME_WAIT
        // ends (60 s on Linux). PortProblem has checked that nothing listens there; wait them out.
        var waitUntil = DateTime.UtcNow + BindWait;
        var said = false;
        while (true)
        {
            var server = Ceen.Httpd.HttpServer.ListenAsync(endpoint, false, config, stop.Token);
            // A bind failure faults the task at once; a server that runs has not completed.
            if (await Task.WhenAny(server, Task.Delay(TimeSpan.FromSeconds(1))) != server) return;
            try
            {
                await server;
                return;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && DateTime.UtcNow < waitUntil && !stop.IsCancellationRequested)
            {
                if (!said) system.Log.Info("Node:ManagementPort {0}: waiting for the closed connections of a previous run to expire (TIME_WAIT)", options.ManagementPort);
                said = true;
                await Task.Delay(TimeSpan.FromSeconds(2));
            }
        }
    }

    /// <summary>The longest the endpoint waits for its port (Linux keeps closed connections in TIME_WAIT for 60 s).</summary>
    static readonly TimeSpan BindWait = TimeSpan.FromSeconds(90);

    /// <summary>
    /// A restarted seed first tries the members it remembers (never itself): its workers may still form the cluster,
    /// and bootstrap alone would have it form a second one beside them when it is the only seed.
    /// </summary>
    static async Task<bool> RejoinRememberedAsync(Cluster cluster, ClusterCredentials? credentials, IReadOnlyList<string> remembered, ILogger log)
    {
        log.LogInformation("bootstrap: first trying the remembered members {Members} for {Seconds:F0} s", string.Join(", ", remembered), RememberedJoinTimeout.TotalSeconds);
        cluster.JoinSeedNodes(remembered.Select(a => Address.Parse(ClusterHocon.NodeAddress(credentials is not null, a))));
        var deadline = DateTime.UtcNow + RememberedJoinTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (cluster.SelfMember.Status is MemberStatus.Joining or MemberStatus.WeaklyUp or MemberStatus.Up) return true;
            await Task.Delay(250);
        }
        log.LogInformation("bootstrap: no remembered member let this seed in; bootstrapping");
        return false;
    }
}
