using System.Net;
using GanCluster.Actors;
using Microsoft.Extensions.Configuration;

namespace GanCluster.Node;

/// <summary>
/// Settings of one node (section "Node" of cluster-config/node.json; overridden by environment variables such as
/// GANCLUSTER_Node__Port=4053 and by command-line flags such as --Node:Port=4053).
/// </summary>
public sealed class NodeOptions
{
    /// <summary>seed, worker, or both (comma-separated).</summary>
    public string Roles { get; set; } = "worker";
    /// <summary>Address Akka.Remote binds to.</summary>
    public string Host { get; set; } = "127.0.0.1";
    /// <summary>Akka.Remote port; 0 picks a free one (fine for workers, seeds need a known port).</summary>
    public int Port { get; set; }
    /// <summary>Host name other nodes use to reach this one (default: Host).</summary>
    public string? PublicHost { get; set; }
    /// <summary>Seed nodes as host:port, comma-separated. A seed lists itself among them.</summary>
    public string Seeds { get; set; } = "";
    /// <summary>Worker devices: cpu, cuda:0,cuda:1, or all (every CUDA device, else one cpu worker).</summary>
    public string Devices { get; set; } = "cpu";
    /// <summary>Address the gradient data plane binds to (default: Host).</summary>
    public string? DataBind { get; set; }
    /// <summary>
    /// Ports of the workers' gradient ring listeners, so that a firewall can let them through: empty (default) = any
    /// free port; <c>N</c> = port N (one device); <c>first-last</c> = one port per device, in Devices order.
    /// </summary>
    public string DataPorts { get; set; } = "";
    /// <summary>
    /// A file the node writes "listening ADDRESS" to once it listens and "joined ADDRESS" once it is a member (the start
    /// scripts wait on it, whatever the log's levels or format); none by default.
    /// </summary>
    public string? ReadyFile { get; set; }
    /// <summary>
    /// Coordinator: seconds every worker has to answer an update, a save or an abort before the silent ones are dropped
    /// (and a leaving worker, to reach the next update boundary).
    /// </summary>
    public int StepTimeoutSeconds { get; set; } = 120;
    /// <summary>Worker: seconds to connect the gradient ring, and the longest a ring peer may stay silent in an all-reduce.</summary>
    public int RingTimeoutSeconds { get; set; } = 120;
    /// <summary>Worker: seconds the seed has to acknowledge each 64 KB chunk of a save (upload) or to send one of a checkpoint (fetch).</summary>
    public int ChunkTimeoutSeconds { get; set; } = 60;
    /// <summary>Seconds for workers to load data, build models and connect the ring.</summary>
    public int PrepareTimeoutSeconds { get; set; } = 300;
    /// <summary>Iterations between parameter checksum comparisons (0 = off).</summary>
    public int ChecksumEvery { get; set; } = 50;
    /// <summary>
    /// libtorch intra-op threads of a CPU worker (0 = libtorch's default, every core). Several workers or nodes on one
    /// machine should split the cores: OpenMP threads spin while waiting and starve the other processes.
    /// </summary>
    public int CpuThreads { get; set; }
    /// <summary>
    /// Seed: where the coordinator records the run it drives (active-run.json), so that it resumes the run after a
    /// restart. Every seed that can host the coordinator must see the same folder (a shared volume), as for the
    /// run's output and checkpoints.
    /// </summary>
    public string StateDir { get; set; } = "state";
    /// <summary>Seconds a restarted coordinator waits for the run's previous number of workers before resuming with fewer.</summary>
    public int ResumeGraceSeconds { get; set; } = 10;
    /// <summary>
    /// Seconds the split-brain resolver waits for membership to settle before downing unreachable nodes (Akka's
    /// stable-after; the singleton also waits this long after a removal). A crashed seed's coordinator is back after
    /// about detection + 2 × this. Lower fails over sooner but risks downing a node that was only slow; set the same
    /// value on every node.
    /// </summary>
    public int DowningStableAfterSeconds { get; set; } = 20;
    /// <summary>
    /// Seed: the folder every cluster run's output is under. A spec's <c>output</c> is a relative folder inside it;
    /// absolute paths and paths that climb out are refused. Default: the seed's working directory.
    /// </summary>
    public string RunsRoot { get; set; } = ".";
    /// <summary>Seed: the most memory a submitted run may need, in GB, by the estimate from its spec (model, batch).</summary>
    public double MaxRunMemoryGB { get; set; } = 64;
    /// <summary>cuDNN autotuning of convolution algorithms on CUDA workers (cudnn.benchmark); ignored on CPU workers.</summary>
    public bool CudnnBenchmark { get; set; } = true;
    /// <summary>
    /// The cluster's credentials folder (cluster.pfx and cluster.secret, made by <c>gancluster certs create</c>): mutual
    /// TLS on Akka.Remote with the cluster's pinned certificate, and the gradient ring's handshake key. Required unless
    /// <see cref="Insecure"/>.
    /// </summary>
    public string? Credentials { get; set; }
    /// <summary>
    /// Run with no TLS and no authentication: anyone who can reach this node's ports can join the cluster, submit,
    /// cancel and read runs. Only for a machine of one's own (tests, a laptop); logged loudly.
    /// </summary>
    public bool Insecure { get; set; }
    /// <summary>Encrypt the gradient ring (AES-GCM) as well as authenticating its handshake; costs bandwidth (docs/benchmarks.md).</summary>
    public bool RingEncryption { get; set; }
    /// <summary>A PyTorch install's torch/lib to load libtorch (and CUDA) from; default $TORCH_LIB_DIR or the bundled CPU libtorch.</summary>
    public string? TorchLibDir { get; set; }
    /// <summary>Port of the Prometheus metrics endpoint (http://MetricsHost:MetricsPort/metrics); 0 = no endpoint.</summary>
    public int MetricsPort { get; set; }
    /// <summary>
    /// Address the metrics endpoint binds to: loopback by default, so nothing is open to other machines unless asked
    /// (0.0.0.0 = every interface; the endpoint has no authentication, see cluster-config/README.md).
    /// </summary>
    public string MetricsHost { get; set; } = "127.0.0.1";
    /// <summary>
    /// Seed: port of the HTTP API and dashboard (docs/http-api.md); 0 = off. With credentials it is HTTPS with the
    /// cluster's certificate and asks for the cluster's certificate or token; with Node:Insecure plain HTTP on loopback.
    /// </summary>
    public int HttpPort { get; set; }
    /// <summary>Address the HTTP API binds to (default: Host); with Node:Insecure it must be a loopback address.</summary>
    public string? HttpHost { get; set; }

    /// <summary>
    /// How the node finds the cluster: <c>seeds</c> (default) joins the fixed Node:Seeds list; <c>config</c> and
    /// <c>kubernetes</c> run Akka.Management's Cluster Bootstrap, which finds the seeds' management endpoints (listed in
    /// Node:DiscoveryEndpoints, or the pods that Node:DiscoveryLabelSelector selects) and joins their cluster, or lets the
    /// lowest seed form it.
    /// </summary>
    public string Discovery { get; set; } = "seeds";
    /// <summary>Bootstrap: the service name looked up (the name of Node:DiscoveryEndpoints' entry; the {0} of a label selector).</summary>
    public string DiscoveryService { get; set; } = "gancluster-seed";
    /// <summary>Discovery=config: the seeds' management endpoints as host:port (their Node:ManagementPort), comma-separated.</summary>
    public string DiscoveryEndpoints { get; set; } = "";
    /// <summary>Discovery=kubernetes: the pods whose management port (named "management") are contact points: the seeds only.</summary>
    public string DiscoveryLabelSelector { get; set; } = "app.kubernetes.io/name=gancluster,gancluster.io/role=seed";
    /// <summary>Discovery=kubernetes: the namespace searched (default: the pod's own, from its service account).</summary>
    public string? DiscoveryNamespace { get; set; }
    /// <summary>Bootstrap: how many seeds must have been found and answered before the lowest of them forms a new cluster.</summary>
    public int RequiredContacts { get; set; } = 1;
    /// <summary>
    /// Port of Akka.Management's HTTP endpoint (read-only: /alive, /ready and, with bootstrap, /bootstrap/seed-nodes);
    /// 0 = none (only with Discovery=seeds). It has no authentication (cluster-config/README.md).
    /// </summary>
    public int ManagementPort { get; set; }
    /// <summary>Address the management endpoint binds to (default: Host, so loopback unless the node listens wider).</summary>
    public string? ManagementHost { get; set; }

    public IReadOnlyList<string> RoleList => Roles.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    public bool IsSeed => RoleList.Contains("seed");
    public bool IsWorker => RoleList.Contains("worker");
    public string EffectiveHttpHost => string.IsNullOrWhiteSpace(HttpHost) ? Host : HttpHost!;
    public string EffectivePublicHost => string.IsNullOrWhiteSpace(PublicHost) ? Host : PublicHost!;
    public IReadOnlyList<HostPort> SeedList => HostPort.ParseList(Seeds, out _);
    /// <summary>Whether Akka.Management's Cluster Bootstrap forms and joins the cluster (Discovery config or kubernetes).</summary>
    public bool UsesBootstrap => Discovery is "config" or "kubernetes";
    public string EffectiveManagementHost => string.IsNullOrWhiteSpace(ManagementHost) ? Host : ManagementHost!;
    public IReadOnlyList<HostPort> DiscoveryEndpointList => HostPort.ParseList(DiscoveryEndpoints, out _);

    /// <summary>The ring listener's port of the worker of device number <paramref name="index"/> (0: any free port).</summary>
    public int DataPortOf(int index) => TryParseDataPorts(DataPorts, out var range) && range is { } r ? r.First + index : 0;

    /// <summary>Why Node:DataPorts cannot serve <paramref name="devices"/> workers, or null.</summary>
    public string? DataPortsProblem(int devices) =>
        TryParseDataPorts(DataPorts, out var range) && range is { } r && r.Count < devices
            ? $"Node:DataPorts {DataPorts} gives {r.Count} port(s) for {devices} worker devices ({Devices}): give a range such as {r.First}-{r.First + devices - 1}"
            : null;

    /// <summary>Parses Node:DataPorts; <paramref name="range"/> is null for "any free port".</summary>
    public static bool TryParseDataPorts(string? text, out (int First, int Count)? range)
    {
        range = null;
        if (string.IsNullOrWhiteSpace(text)) return true;
        var parts = text.Split('-', StringSplitOptions.TrimEntries);
        static bool Port(string p, out int v) => int.TryParse(p, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out v) && v is >= 1 and <= 65535;
        if (parts.Length == 1 && Port(parts[0], out var single)) range = (single, 1);
        else if (parts.Length == 2 && Port(parts[0], out var first) && Port(parts[1], out var last) && last >= first) range = (first, last - first + 1);
        else return false;
        return true;
    }

    /// <summary>
    /// Reads the "Node" section: an unknown setting (a typo in GANCLUSTER_Node__Seeds is otherwise ignored silently),
    /// a value of the wrong type and every failed check come back as problems, each naming its option.
    /// </summary>
    public static (NodeOptions Options, List<string> Problems) Bind(IConfiguration configuration)
    {
        var section = configuration.GetSection("Node");
        var properties = typeof(NodeOptions).GetProperties().Where(p => p.CanWrite).ToList();
        var known = properties.Select(p => p.Name).ToList();
        var problems = section.GetChildren().Where(c => !known.Contains(c.Key, StringComparer.OrdinalIgnoreCase))
            .Select(c => $"Node:{c.Key} is not a node setting (known: {string.Join(", ", known)})").ToList();
        var options = new NodeOptions();
        foreach (var property in properties)
        {
            var raw = section[property.Name];
            if (raw is null) continue;
            try
            {
                var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
                property.SetValue(options, Convert.ChangeType(raw, type, System.Globalization.CultureInfo.InvariantCulture));
            }
            catch (Exception e) when (e is FormatException or OverflowException)
            {
                problems.Add($"Node:{property.Name} must be {(property.PropertyType == typeof(int) ? "a whole number" : property.PropertyType == typeof(double) ? "a number" : property.PropertyType == typeof(bool) ? "true or false" : property.PropertyType.Name)} (got \"{raw}\")");
            }
        }
        if (problems.Count == 0) problems.AddRange(options.Validate());
        return (options, problems);
    }

    /// <summary>Every problem, each naming its option.</summary>
    public List<string> Validate()
    {
        var e = new List<string>();
        if (RoleList.Count == 0 || RoleList.Any(r => r is not ("seed" or "worker")))
            e.Add($"Node:Roles must be seed, worker or seed,worker (got \"{Roles}\")");
        if (!IPAddress.TryParse(Host, out _) && Host != "0.0.0.0")
            e.Add($"Node:Host must be an IP address to bind to (got \"{Host}\")");
        if (Port is < 0 or > 65535) e.Add($"Node:Port must be 0-65535 (got {Port})");
        if (IsSeed && Port == 0) e.Add("Node:Port must be fixed (not 0) on a seed: workers and clients connect to it");
        HostPort.ParseList(Seeds, out var badSeeds);
        e.AddRange(badSeeds.Select(s => $"Node:Seeds entry \"{s}\" must be host:port"));
        if (Discovery is not ("seeds" or "config" or "kubernetes"))
            e.Add($"Node:Discovery must be seeds, config or kubernetes (got \"{Discovery}\")");
        if (Discovery == "seeds" && string.IsNullOrWhiteSpace(Seeds)) e.Add("Node:Seeds must name at least one seed (host:port) with Node:Discovery=seeds");
        if (UsesBootstrap)
        {
            if (ManagementPort == 0) e.Add($"Node:ManagementPort must be a port 1-65535 with Node:Discovery={Discovery}: Cluster Bootstrap finds the seeds through it");
            if (string.IsNullOrWhiteSpace(DiscoveryService)) e.Add($"Node:DiscoveryService must name the service looked up with Node:Discovery={Discovery}");
            if (RequiredContacts < 1) e.Add($"Node:RequiredContacts must be at least 1 (got {RequiredContacts})");
        }
        if (Discovery == "config")
        {
            HostPort.ParseList(DiscoveryEndpoints, out var badEndpoints);
            e.AddRange(badEndpoints.Select(x => $"Node:DiscoveryEndpoints entry \"{x}\" must be host:port (a seed's management endpoint)"));
            if (string.IsNullOrWhiteSpace(DiscoveryEndpoints))
                e.Add("Node:DiscoveryEndpoints must list the seeds' management endpoints (host:ManagementPort, comma-separated) with Node:Discovery=config");
        }
        if (Discovery == "kubernetes" && string.IsNullOrWhiteSpace(DiscoveryLabelSelector))
            e.Add("Node:DiscoveryLabelSelector must select the seed pods with Node:Discovery=kubernetes");
        if (ManagementPort is < 0 or > 65535) e.Add($"Node:ManagementPort must be 0 (no management endpoint) or a port 1-65535 (got {ManagementPort})");
        if (ManagementPort != 0 && ManagementPort == Port) e.Add($"Node:ManagementPort must differ from Node:Port ({Port})");
        if (ManagementPort != 0 && ManagementPort == MetricsPort) e.Add($"Node:ManagementPort must differ from Node:MetricsPort ({MetricsPort})");
        if (!IPAddress.TryParse(EffectiveManagementHost, out _))
            e.Add($"Node:ManagementHost must be an IP address to bind to, such as 127.0.0.1 or 0.0.0.0 (got \"{EffectiveManagementHost}\")");
        if (string.IsNullOrWhiteSpace(Devices)) e.Add("Node:Devices must be cpu, cuda:N[,cuda:M] or all");
        if (DataBind is not null && !IPAddress.TryParse(DataBind, out _)) e.Add($"Node:DataBind must be an IP address (got \"{DataBind}\")");
        if (!TryParseDataPorts(DataPorts, out _)) e.Add($"Node:DataPorts must be empty (any free port), a port N or a range first-last within 1-65535 (got \"{DataPorts}\")");
        // Workers in a long segment report progress every ProgressEverySeconds: a shorter timeout would drop them.
        var minStep = 2 * Protocol.WorkerProtocol.ProgressEverySeconds;
        if (StepTimeoutSeconds < minStep) e.Add($"Node:StepTimeoutSeconds must be at least {minStep} (got {StepTimeoutSeconds}): workers report progress every {Protocol.WorkerProtocol.ProgressEverySeconds} s");
        if (RingTimeoutSeconds < 1) e.Add($"Node:RingTimeoutSeconds must be at least 1 (got {RingTimeoutSeconds})");
        if (ChunkTimeoutSeconds < 1) e.Add($"Node:ChunkTimeoutSeconds must be at least 1 (got {ChunkTimeoutSeconds})");
        if (PrepareTimeoutSeconds < 1) e.Add($"Node:PrepareTimeoutSeconds must be at least 1 (got {PrepareTimeoutSeconds})");
        if (CpuThreads < 0) e.Add($"Node:CpuThreads must be 0 (default) or more (got {CpuThreads})");
        if (string.IsNullOrWhiteSpace(StateDir)) e.Add("Node:StateDir must name a folder");
        if (string.IsNullOrWhiteSpace(RunsRoot)) e.Add("Node:RunsRoot must name a folder");
        if (ResumeGraceSeconds < 0) e.Add($"Node:ResumeGraceSeconds must be 0 or more (got {ResumeGraceSeconds})");
        if (DowningStableAfterSeconds < 1) e.Add($"Node:DowningStableAfterSeconds must be at least 1 (got {DowningStableAfterSeconds})");
        if (!(MaxRunMemoryGB > 0) || !double.IsFinite(MaxRunMemoryGB)) e.Add($"Node:MaxRunMemoryGB must be a positive number (got {MaxRunMemoryGB})");
        if (string.IsNullOrWhiteSpace(Credentials) && !Insecure)
            e.Add("Node:Credentials must name the cluster's credentials folder (create it once with: gancluster certs create --out DIR, " +
                  "and give every node and client the same folder), or set Node:Insecure=true to run with no TLS and no authentication");
        if (!string.IsNullOrWhiteSpace(Credentials) && Insecure)
            e.Add("Node:Credentials and Node:Insecure=true exclude each other: choose one");
        if (Insecure && RingEncryption)
            e.Add("Node:RingEncryption needs Node:Credentials (its keys come from the cluster's secret)");
        if (MetricsPort is < 0 or > 65535) e.Add($"Node:MetricsPort must be 0 (no metrics endpoint) or a port 1-65535 (got {MetricsPort})");
        if (MetricsPort != 0 && MetricsPort == Port) e.Add($"Node:MetricsPort must differ from Node:Port ({Port})");
        if (!IPAddress.TryParse(MetricsHost, out _)) e.Add($"Node:MetricsHost must be an IP address to bind to, such as 127.0.0.1 or 0.0.0.0 (got \"{MetricsHost}\")");
        if (HttpPort is < 0 or > 65535) e.Add($"Node:HttpPort must be 0 (no HTTP API) or a port 1-65535 (got {HttpPort})");
        if (HttpPort > 0)
        {
            if (!IsSeed) e.Add($"Node:HttpPort is served by seeds only (Node:Roles is \"{Roles}\"): leave it 0 on workers");
            if (HttpPort == Port) e.Add($"Node:HttpPort must differ from Node:Port ({Port})");
            if (HttpPort == MetricsPort) e.Add($"Node:HttpPort must differ from Node:MetricsPort ({MetricsPort})");
            if (!IPAddress.TryParse(EffectiveHttpHost, out var httpHost))
                e.Add($"Node:HttpHost must be an IP address to bind to, such as 127.0.0.1 or 0.0.0.0 (got \"{EffectiveHttpHost}\")");
            else if (Insecure && !IPAddress.IsLoopback(httpHost))
                e.Add($"Node:HttpHost must be a loopback address such as 127.0.0.1 with Node:Insecure=true (got \"{EffectiveHttpHost}\"" +
                      $"{(string.IsNullOrWhiteSpace(HttpHost) ? ", from Node:Host" : "")}): without credentials the API has no authentication and is never opened to other machines");
        }
        if (ChecksumEvery < 0) e.Add($"Node:ChecksumEvery must be 0 or more (got {ChecksumEvery})");
        return e;
    }
}
