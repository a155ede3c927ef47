using System.Net;
using GanCluster.Node;
using GanCluster.Tests.Shared;
using Microsoft.Extensions.Configuration;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Cluster Bootstrap through Akka.Management with Akka.Discovery's config method (Node:Discovery=config), as Kubernetes
/// runs it with the pod label selector: real seed and worker processes on loopback with no Node:Seeds, and their
/// /alive and /ready endpoints over real HTTP.
/// </summary>
[Collection("processes")]
public class BootstrapTests
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>The status code and body of GET http://127.0.0.1:port/path, or 0 when nothing answers.</summary>
    static (int Status, string Body) Get(int port, string path)
    {
        try
        {
            using var response = Http.GetAsync($"http://127.0.0.1:{port}{path}").GetAwaiter().GetResult();
            return ((int)response.StatusCode, response.Content.ReadAsStringAsync().GetAwaiter().GetResult());
        }
        catch (HttpRequestException)
        {
            return (0, "");
        }
        catch (TaskCanceledException)
        {
            return (0, "");
        }
    }

    [Fact]
    public void Two_seeds_and_a_worker_bootstrap_one_cluster_from_config_discovery_and_their_probes_follow_it()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        int[] akka = [NodeProcesses.FreePort(), NodeProcesses.FreePort()];
        int[] management = [NodeProcesses.FreePort(), NodeProcesses.FreePort(), NodeProcesses.FreePort()];
        var endpoints = $"127.0.0.1:{management[0]},127.0.0.1:{management[1]}";
        string[] discovery = ["--Node:Discovery=config", $"--Node:DiscoveryEndpoints={endpoints}"];

        // The worker first, with no seed anywhere: alive, not ready, and it never forms a cluster of its own.
        var worker = nodes.TryStart("start-worker.sh", ["--host", "127.0.0.1", "--cpu-threads", "1", "--log-dir", nodes.Logs, "--join-timeout", "0",
            .. discovery, $"--Node:ManagementPort={management[2]}"]);
        Assert.True(worker.ExitCode == 0, worker.StdOut + worker.StdErr);
        nodes.WaitFor(() => Get(management[2], "/alive").Status == 200, TimeSpan.FromMinutes(1), "the worker's /alive");
        Assert.Contains("\"actor-system\"", Get(management[2], "/alive").Body);
        var notReady = Get(management[2], "/ready");
        Assert.Equal(503, notReady.Status);
        Assert.Contains("not registered with the coordinator yet", notReady.Body);
        // Stays so while bootstrap keeps probing seeds that are not there (its stable margin is 5 s).
        Thread.Sleep(TimeSpan.FromSeconds(8));
        Assert.Equal(503, Get(management[2], "/ready").Status);
        Assert.DoesNotContain("joined the cluster", nodes.Log(worker.Pid!.Value));

        // Two seeds, each of which waits for the other (RequiredContacts=2): the lowest forms the cluster, the other joins.
        string[] Seed(int i) => ["--host", "127.0.0.1", "--port", akka[i].ToString(), "--log-dir", nodes.Logs, "--state-dir", nodes.StateDir,
            $"--Node:RunsRoot={dir.Path}", .. discovery, $"--Node:ManagementPort={management[i]}", "--Node:RequiredContacts=2"];
        var first = nodes.TryStart("start-seed.sh", [.. Seed(0), "--join-timeout", "0"]);
        Assert.True(first.ExitCode == 0, first.StdOut + first.StdErr);
        var second = nodes.TryStart("start-seed.sh", Seed(1));
        Assert.True(second.ExitCode == 0, $"{second.StdOut}{second.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("; joined", second.StdOut);

        nodes.WaitFor(() => Get(management[2], "/ready").Status == 200, TimeSpan.FromMinutes(2), "the worker's /ready once registered");
        Assert.Contains("1 worker(s) registered with the coordinator", Get(management[2], "/ready").Body);
        foreach (var seedManagement in management[..2])
        {
            nodes.WaitFor(() => Get(seedManagement, "/ready").Status == 200, TimeSpan.FromMinutes(1), "a seed's /ready once the coordinator answers");
            Assert.Contains("the coordinator answers", Get(seedManagement, "/ready").Body);
            // Only read-only routes: the bootstrap's seed nodes, not Akka.Management's other providers.
            Assert.Equal(200, Get(seedManagement, "/bootstrap/seed-nodes").Status);
            Assert.Equal(404, Get(seedManagement, "/remote/address").Status);
        }
        foreach (var seed in new[] { first, second })
            Assert.Contains("bootstrap: looking up gancluster-seed by config discovery; 2 seed(s) must answer before one forms a new cluster (new-cluster-enabled on)",
                nodes.Log(seed.Pid!.Value));
        var workerLog = nodes.Log(worker.Pid!.Value);
        Assert.Contains("(new-cluster-enabled off)", workerLog);
        Assert.Contains("joined the cluster as", workerLog);

        // One cluster: either seed's coordinator proxy sees the worker, and a small run trains to its end.
        nodes.WaitForWorkers(akka[0], 1);
        nodes.WaitForWorkers(akka[1], 1);
        var spec = Path.Combine(dir.Path, "boot.json");
        File.WriteAllText(spec, Specs.Ring8(batch: 32, iterations: 20, output: "boot").ToJson());
        var run = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{akka[1]}", "--wait"], timeoutSeconds: 300);
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("on 1 worker(s)", run.StdOut);

        // A worker shutting down is no longer alive.
        nodes.Terminate(worker.Pid!.Value);
        nodes.WaitFor(() => Get(management[2], "/alive").Status != 200, TimeSpan.FromMinutes(1), "the leaving worker's /alive");
    }

    [Fact]
    public void A_bootstrapped_seed_killed_and_restarted_rejoins_its_workers_cluster_through_the_members_it_remembers()
    {
        using var nodes = new NodeProcesses();
        var port = NodeProcesses.FreePort();
        var management = NodeProcesses.FreePort();
        // Quick downing, so that the workers (a majority of the three) remove the killed seed soon.
        string[] common = ["--Node:Discovery=config", $"--Node:DiscoveryEndpoints=127.0.0.1:{management}", "--Node:DowningStableAfterSeconds=5"];
        string[] seedArgs = ["--host", "127.0.0.1", "--port", port.ToString(), "--log-dir", nodes.Logs, "--state-dir", nodes.StateDir,
            $"--Node:RunsRoot={nodes.RunsRoot}", .. common, $"--Node:ManagementPort={management}"];
        var seed = nodes.TryStart("start-seed.sh", seedArgs);
        Assert.True(seed.ExitCode == 0, seed.StdOut + seed.StdErr);
        foreach (var _ in Enumerable.Range(0, 2))
        {
            var w = nodes.TryStart("start-worker.sh", ["--host", "127.0.0.1", "--cpu-threads", "1", "--log-dir", nodes.Logs, .. common,
                $"--Node:ManagementPort={NodeProcesses.FreePort()}"]);
            Assert.True(w.ExitCode == 0, w.StdOut + w.StdErr);
        }
        nodes.WaitForWorkers(port, 2);
        nodes.WaitFor(() => MemberBook.Read(nodes.StateDir).Count == 2, TimeSpan.FromMinutes(1), "the seed remembers both workers");

        // The only seed dies; the workers stay a cluster of their own. Bootstrap alone would have the restarted seed form
        // a new cluster (it is the only contact point); it first tries the workers it remembers and joins theirs.
        nodes.Kill(seed.Pid!.Value);
        nodes.WaitFor(() => NodeProcesses.Exited(seed.Pid!.Value), TimeSpan.FromSeconds(30), "the seed process gone");
        var restarted = nodes.TryStart("start-seed.sh", seedArgs);
        Assert.True(restarted.ExitCode == 0, $"{restarted.StdOut}{restarted.StdErr}\n{nodes.AllLogs()}");
        var log = nodes.Log(restarted.Pid!.Value);
        Assert.Contains("bootstrap: first trying the remembered members", log);
        Assert.DoesNotContain("bootstrapping", log);
        nodes.WaitForWorkers(port, 2);
        nodes.WaitFor(() => Get(management, "/ready").Status == 200, TimeSpan.FromMinutes(3), "the restarted seed's /ready (its port may first wait out TIME_WAIT)");
        Assert.DoesNotContain("Initiating bootstrap procedure", nodes.Log(restarted.Pid!.Value));
    }

    [Fact]
    public void A_seed_whose_remembered_members_are_all_gone_bootstraps_after_trying_them()
    {
        using var nodes = new NodeProcesses();
        var management = NodeProcesses.FreePort();
        // A cold start of the whole cluster: the members the seed remembers no longer exist.
        Directory.CreateDirectory(nodes.StateDir);
        File.WriteAllText(Path.Combine(nodes.StateDir, MemberBook.FileName), $"[\"127.0.0.1:{NodeProcesses.FreePort()}\"]");
        var seed = nodes.TryStart("start-seed.sh", "--host", "127.0.0.1", "--port", NodeProcesses.FreePort().ToString(), "--log-dir", nodes.Logs,
            "--state-dir", nodes.StateDir, "--Node:Discovery=config", $"--Node:DiscoveryEndpoints=127.0.0.1:{management}", $"--Node:ManagementPort={management}");
        Assert.True(seed.ExitCode == 0, $"{seed.StdOut}{seed.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("bootstrap by config discovery; joined", seed.StdOut);
        var log = nodes.Log(seed.Pid!.Value);
        Assert.Contains("bootstrap: first trying the remembered members", log);
        Assert.Contains("bootstrap: no remembered member let this seed in; bootstrapping", log);
        nodes.WaitFor(() => Get(management, "/ready").Status == 200, TimeSpan.FromMinutes(1), "the seed's /ready");
    }

    static IConfiguration Config(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value))).Build();

    [Fact]
    public void Discovery_and_management_options_are_checked_naming_the_option()
    {
        // Bootstrap needs no seeds, but a management port and, for config, the seeds' endpoints.
        var (_, problems) = NodeOptions.Bind(Config(("Node:Insecure", "true"), ("Node:Discovery", "config")));
        Assert.DoesNotContain(problems, p => p.StartsWith("Node:Seeds", StringComparison.Ordinal));
        Assert.Contains("Node:ManagementPort must be a port 1-65535 with Node:Discovery=config: Cluster Bootstrap finds the seeds through it", problems);
        Assert.Contains("Node:DiscoveryEndpoints must list the seeds' management endpoints (host:ManagementPort, comma-separated) with Node:Discovery=config", problems);

        (_, problems) = NodeOptions.Bind(Config(("Node:Insecure", "true")));
        Assert.Contains("Node:Seeds must name at least one seed (host:port) with Node:Discovery=seeds", problems);

        (_, problems) = NodeOptions.Bind(Config(("Node:Insecure", "true"), ("Node:Discovery", "dns")));
        Assert.Contains("Node:Discovery must be seeds, config or kubernetes (got \"dns\")", problems);

        (_, problems) = NodeOptions.Bind(Config(("Node:Insecure", "true"), ("Node:Discovery", "config"), ("Node:DiscoveryEndpoints", "a:8558,b"),
            ("Node:ManagementPort", "9464"), ("Node:MetricsPort", "9464"), ("Node:RequiredContacts", "0"), ("Node:ManagementHost", "localhost")));
        Assert.Contains("Node:DiscoveryEndpoints entry \"b\" must be host:port (a seed's management endpoint)", problems);
        Assert.Contains("Node:ManagementPort must differ from Node:MetricsPort (9464)", problems);
        Assert.Contains("Node:RequiredContacts must be at least 1 (got 0)", problems);
        Assert.Contains("Node:ManagementHost must be an IP address to bind to, such as 127.0.0.1 or 0.0.0.0 (got \"localhost\")", problems);

        (_, problems) = NodeOptions.Bind(Config(("Node:Insecure", "true"), ("Node:Discovery", "kubernetes"), ("Node:Port", "8558"),
            ("Node:ManagementPort", "8558"), ("Node:DiscoveryLabelSelector", " ")));
        Assert.Contains("Node:ManagementPort must differ from Node:Port (8558)", problems);
        Assert.Contains("Node:DiscoveryLabelSelector must select the seed pods with Node:Discovery=kubernetes", problems);

        (_, problems) = NodeOptions.Bind(Config(("Node:Seeds", "a:4053"), ("Node:Insecure", "true"), ("Node:ManagementPort", "70000")));
        Assert.Contains("Node:ManagementPort must be 0 (no management endpoint) or a port 1-65535 (got 70000)", problems);

        // The defaults: a fixed seed list, no management endpoint; bootstrap defaults as the Kubernetes manifests use them.
        var (options, none) = NodeOptions.Bind(Config(("Node:Seeds", "a:4053"), ("Node:Insecure", "true")));
        Assert.Empty(none);
        Assert.Equal(("seeds", 0, "gancluster-seed", 1), (options.Discovery, options.ManagementPort, options.DiscoveryService, options.RequiredContacts));
        Assert.Equal("app.kubernetes.io/name=gancluster,gancluster.io/role=seed", options.DiscoveryLabelSelector);
        Assert.Equal("127.0.0.1", options.EffectiveManagementHost);
    }

    [Fact]
    public void A_management_port_in_use_stops_the_node_naming_the_option()
    {
        using var nodes = new NodeProcesses();
        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var busy = ((IPEndPoint)taken.LocalEndpoint).Port;
        var worker = nodes.TryStart("start-worker.sh", "--host", "127.0.0.1", "--log-dir", nodes.Logs, "--Node:Discovery=config",
            $"--Node:DiscoveryEndpoints=127.0.0.1:{NodeProcesses.FreePort()}", $"--Node:ManagementPort={busy}");
        Assert.Equal(2, worker.ExitCode);
        Assert.Contains($"error: Node:ManagementPort {busy} on 127.0.0.1 cannot be listened on (AddressAlreadyInUse", worker.StdErr);
    }
}
