using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Cluster.Tools.Client;
using Akka.Hosting;
using Akka.Remote.Hosting;
using GanCluster.Actors;
using GanCluster.Actors.Coordinator;
using GanCluster.Actors.Security;
using GanCluster.Actors.Worker;
using GanCluster.Node;
using GanCluster.Training.Native;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using TorchSharp;

// Settings: cluster-config/node.json (or --config FILE), then GANCLUSTER_* environment variables, then --Node:X=Y flags.
var builder = Host.CreateApplicationBuilder(args);
var configFile = builder.Configuration["config"] ?? Path.Combine(AppContext.BaseDirectory, "node.json");
builder.Configuration.AddJsonFile(configFile, optional: true)
    .AddEnvironmentVariables("GANCLUSTER_")
    .AddCommandLine(args);
var (options, problems) = NodeOptions.Bind(builder.Configuration);
if (problems.Count > 0)
{
    Console.Error.WriteLine("error: invalid node settings:\n" + string.Join("\n", problems.Select(p => "  - " + p)));
    return 2;
}

ClusterCredentials? credentials;
try
{
    credentials = NodeSecurity.Load(options);
}
catch (CredentialsException e)
{
    Console.Error.WriteLine($"error: Node:Credentials: {e.Message}");
    return 2;
}

// libtorch first: a worker that cannot load it should say so now, not at the first run.
var devices = new List<torch.Device>();
if (options.IsWorker)
{
    try
    {
        var env = TorchRuntime.Initialize(options.TorchLibDir);
        devices.AddRange(NodeDevices.Resolve(options.Devices, env, warn: m => Console.Error.WriteLine($"gancluster node: warning: {m}")));
        if (options.CpuThreads > 0) torch.set_num_threads(options.CpuThreads);
        if (devices.Any(d => d.type == DeviceType.CUDA))
        {
            var set = TorchRuntime.SetCudnnBenchmark(options.CudnnBenchmark);
            Console.WriteLine($"gancluster node: cudnn.benchmark {(set is null ? "not available in this libtorch" : set.Value ? "on" : "off")}");
        }
    }
    catch (Exception e) when (e is TorchLoadException or ArgumentException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }
}

var settings = new CoordinatorSettings(TimeSpan.FromSeconds(options.PrepareTimeoutSeconds), TimeSpan.FromSeconds(options.StepTimeoutSeconds), options.ChecksumEvery)
{
    ResumeGrace = TimeSpan.FromSeconds(options.ResumeGraceSeconds),
    OutputRoot = Path.GetFullPath(options.RunsRoot),
    MemoryLimitBytes = options.MaxRunMemoryGB * 1e9,
};
// SIGTERM: a worker leaves its run at an iteration boundary before the node leaves the cluster; give it the time.
var leaveTimeout = TimeSpan.FromSeconds(options.StepTimeoutSeconds + 30);
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = leaveTimeout + TimeSpan.FromSeconds(30));
// A restarted seed also tries the members it remembers (after the configured seeds): it rejoins its workers' cluster.
var remembered = options.IsSeed ? MemberBook.Read(options.StateDir) : [];
var seedNodes = options.SeedList.Select(s => $"{s.Host}:{s.Port}").Concat(remembered).Distinct()
    .Select(a => ClusterHocon.NodeAddress(credentials is not null, a)).ToArray();
if (remembered.Count > 0) Console.WriteLine($"gancluster node: also trying remembered members {string.Join(", ", remembered)} as seeds");

builder.Services.AddAkka(ClusterHocon.SystemName, akka =>
{
    akka.AddHocon(ClusterHocon.Serialization, HoconAddMode.Prepend)
        .AddHocon(WorkerActor.DispatcherHocon, HoconAddMode.Prepend)
        .AddHocon($"akka.coordinated-shutdown.phases.before-cluster-shutdown.timeout = {(int)leaveTimeout.TotalSeconds}s", HoconAddMode.Prepend)
        // No typed options for these in Akka.Hosting. The resolver's stable-after (Akka's default 20 s), and as many 1 s
        // singleton hand-over retries as its seconds: Akka's removal margin is stable-after, but retries never go below 15.
        .AddHocon($"akka.cluster.split-brain-resolver.stable-after = {options.DowningStableAfterSeconds}s", HoconAddMode.Prepend)
        .AddHocon($"akka.cluster.singleton.min-number-of-hand-over-retries = {options.DowningStableAfterSeconds}", HoconAddMode.Prepend)
        .WithClusterRemoting(options, credentials)
        .WithClustering(new ClusterOptions
        {
            Roles = options.RoleList.ToArray(),
            SeedNodes = seedNodes,
            // Downing by Akka's split-brain resolver, never auto-down: the side with the majority survives.
            SplitBrainResolver = new KeepMajorityOption(),
        });

    // What Akka actually uses once every HOCON layer is merged: the place to check Node:DowningStableAfterSeconds took.
    akka.WithActors((system, _) =>
    {
        system.ActorOf(Props.Create<QuarantineWatch>(), "quarantine-watch");
        var sbr = system.Settings.Config.GetConfig("akka.cluster.split-brain-resolver");
        Console.WriteLine($"gancluster node: downing by {sbr.GetString("active-strategy")} after {sbr.GetTimeSpan("stable-after").TotalSeconds:F0} s stable-after, " +
                          $"{system.Settings.Config.GetInt("akka.cluster.singleton.min-number-of-hand-over-retries")} singleton hand-over retries");
    });

    var singleton = new ClusterSingletonOptions { Role = "seed" };
    if (options.IsSeed)
    {
        akka.WithSingleton<CoordinatorActor>("coordinator", CoordinatorActor.Props(settings, options.StateDir), singleton, createProxyToo: true)
            .WithClusterClientReceptionist("receptionist", "seed")
            .WithActors((system, registry) =>
            {
                system.ActorOf(Props.Create(() => new MemberBook(options.StateDir)), "member-book");
                var gateway = system.ActorOf(Props.Create(() => new ClientGateway(registry.Get<CoordinatorActor>())), ClientGateway.Name);
                ClusterClientReceptionist.Get(system).RegisterService(gateway);
            });
    }
    else
    {
        akka.WithSingletonProxy<CoordinatorActor>("coordinator", singleton);
    }

    if (options.IsWorker)
    {
        akka.WithActors((system, registry) =>
        {
            var self = Cluster.Get(system).SelfAddress;
            var dataBind = options.DataBind ?? options.Host;
            foreach (var device in devices)
            {
                var id = $"{self.Host}:{self.Port}/{device}";
                var ws = new WorkerSettings(id, device.ToString(), dataBind, options.EffectivePublicHost,
                    RingTimeout: TimeSpan.FromSeconds(options.RingTimeoutSeconds), UploadTimeout: TimeSpan.FromSeconds(options.ChunkTimeoutSeconds),
                    Ring: credentials?.Ring(options.RingEncryption) ?? GanCluster.DataPlane.RingSecurity.Insecure, LeaveTimeout: leaveTimeout);
                system.ActorOf(WorkerActor.Props(ws, registry.Get<CoordinatorActor>(), device), "worker-" + device.ToString().Replace(':', '-'));
            }
        });
    }
});

Console.WriteLine($"gancluster node: roles {options.Roles}, {ClusterHocon.NodeAddress(credentials is not null, $"{options.EffectivePublicHost}:{options.Port}")}, seeds {options.Seeds}" +
                  (options.IsWorker ? $", devices {string.Join(",", devices)}" : ""));
const int DownedExitCode = 3;
ActorSystem? actorSystem = null;
try
{
    var host = builder.Build();
    actorSystem = host.Services.GetRequiredService<ActorSystem>();
    await host.RunAsync();
}
catch (Exception e) when (Inner<System.Net.Sockets.SocketException>(e) is { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse })
{
    // Akka.Remote binds without SO_REUSEADDR (ClusterHocon): a second node on a port in use fails here instead of "starting".
    Console.Error.WriteLine($"error: Node:Port {options.Port} on {options.Host} is already in use (another GanCluster node, or another program, listens there); stop it or choose another port");
    return 2;
}
catch (Exception e) when (e is not OperationCanceledException)
{
    Console.Error.WriteLine($"error: the node could not start: {(Inner<Exception>(e, deepest: true) ?? e).Message}");
    return 1;
}
// Downed by the cluster (paused, partitioned, too slow to answer): Akka never lets a downed node back in with the same
// identity. Exit non-zero, so that whatever supervises the node (Kubernetes, systemd, start-*.sh --restart-on-down)
// starts it again and it joins as a new member.
if (actorSystem is not null && CoordinatedShutdown.Get(actorSystem).ShutdownReason is CoordinatedShutdown.ClusterDowningReason)
{
    Console.Error.WriteLine($"gancluster node: this node was downed by the cluster; exiting with code {DownedExitCode} so that its supervisor restarts it");
    return DownedExitCode;
}
return 0;

// The first exception of type T in e's chain of inner exceptions (or the deepest one), however deeply Akka wrapped it.
static T? Inner<T>(Exception e, bool deepest = false) where T : Exception
{
    T? found = null;
    for (Exception? x = e; x is not null; x = x.InnerException)   // an AggregateException's InnerException is its first one
    {
        if (x is T t)
        {
            found = t;
            if (!deepest) return t;
        }
    }
    return found;
}
