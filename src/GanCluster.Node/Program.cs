using Akka.Actor;
using Akka.Hosting;
using GanCluster.Actors;
using GanCluster.Actors.Security;
using GanCluster.Node;
using GanCluster.Node.Hosting;
using GanCluster.Training.Native;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
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

// The lines before the host runs (credentials, devices) go through the same Logging settings (levels, formatter) as
// the host's; the factory is flushed and disposed before the host starts logging.
builder.Logging.AddNodeConsole();
var startupLogs = LoggerFactory.Create(l => l.AddConfiguration(builder.Configuration.GetSection("Logging")).AddNodeConsole());
var startup = startupLogs.CreateLogger("GanCluster.Node");

ClusterCredentials? credentials;
try
{
    credentials = NodeSecurity.Load(options, startup);
}
catch (CredentialsException e)
{
    startupLogs.Dispose();
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
        devices.AddRange(NodeDevices.Resolve(options.Devices, env, warn: m => startup.LogWarning("{Warning}", m)));
        if (options.CpuThreads > 0) torch.set_num_threads(options.CpuThreads);
        if (devices.Any(d => d.type == DeviceType.CUDA))
        {
            var set = TorchRuntime.SetCudnnBenchmark(options.CudnnBenchmark);
            startup.LogInformation("cudnn.benchmark {State}", set is null ? "not available in this libtorch" : set.Value ? "on" : "off");
        }
    }
    catch (Exception e) when (e is TorchLoadException or ArgumentException)
    {
        startupLogs.Dispose();
        Console.Error.WriteLine($"error: {e.Message}");
        return 2;
    }
    if (WorkerHosting.DataPortsProblem(options, devices.Count) is { } portProblem)
    {
        Console.Error.WriteLine($"error: {portProblem}");
        return 2;
    }
}

if (ManagementHosting.PortProblem(options) is { } managementProblem)
{
    startupLogs.Dispose();
    Console.Error.WriteLine($"error: {managementProblem}");
    return 2;
}

// SIGTERM: a worker leaves its run at an iteration boundary before the node leaves the cluster; give it the time.
var leaveTimeout = TimeSpan.FromSeconds(options.StepTimeoutSeconds + 30);
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = leaveTimeout + TimeSpan.FromSeconds(30));

// The service that runs the health checks ManagementHosting registers (served at /alive and /ready).
builder.Services.AddHealthChecks();
builder.Services.AddAkka(ClusterHocon.SystemName, (akka, services) => akka
    .WithNodeLogging(services.GetRequiredService<ILoggerFactory>(), builder.Configuration)
    .WithGanClusterProtocol()
    .WithClusterMembership(options, credentials, leaveTimeout, services.GetRequiredService<ILoggerFactory>().CreateLogger("GanCluster.Node"))
    .WithManagement(options, credentials, services.GetRequiredService<ILoggerFactory>().CreateLogger("GanCluster.Node"))
    .WithCoordinator(options)
    .WithWorkers(options, devices, credentials, leaveTimeout));
builder.Services.AddHttpApi(options, credentials);

startup.LogInformation("roles {Roles}, {Address}, {Seeds}{Devices}", options.Roles,
    ClusterHocon.NodeAddress(credentials is not null, $"{options.EffectivePublicHost}:{options.Port}"),
    options.UsesBootstrap ? $"bootstrap by {options.Discovery} discovery of {options.DiscoveryService}" : $"seeds {options.Seeds}",
    options.IsWorker ? $", devices {string.Join(",", devices)}" : "");
IDisposable? metrics;
try
{
    metrics = MetricsEndpoint.Start(options, devices);
    if (metrics is not null) startup.LogInformation("metrics: http://{Host}:{Port}/metrics", options.MetricsHost, options.MetricsPort);
}
catch (MetricsEndpointException e)
{
    startupLogs.Dispose();
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
startupLogs.Dispose();
using var metricsServer = metrics;
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
// Akka.Remote stops a node whose TLS handshake with the cluster failed (another cluster's credentials, or a stranger's
// certificate): a start that failed, not a clean exit.
if (actorSystem is not null && CoordinatedShutdown.Get(actorSystem).ShutdownReason?.GetType().Name == "TlsHandshakeFailureReason")
{
    Console.Error.WriteLine("error: the TLS handshake with the cluster failed: this node's Node:Credentials are not the cluster's " +
                            "(give it the same credentials folder as the seeds), or the seeds refused it; the log above has Akka's reason");
    return 2;
}
if (actorSystem is not null && CoordinatedShutdown.Get(actorSystem).ShutdownReason is ManagementHosting.EndpointFailed failed)
{
    Console.Error.WriteLine($"error: the management endpoint could not start ({failed.Message}); another program holds the port, or choose another");
    return 2;
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
