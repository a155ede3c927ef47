using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using GanCluster.Node;
using GanCluster.Node.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using AkkaLogLevel = Akka.Event.LogLevel;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Node logs through Microsoft.Extensions.Logging (node.json's levels, JSON for containers), the Prometheus endpoint
/// after a real run, and a clean start and SIGTERM stop without Akka's misleading warning or an ERROR.
/// </summary>
[Collection("processes")]
public partial class NodeTelemetryTests
{
    static IConfiguration Config(params (string Key, string Value)[] settings) =>
        new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => KeyValuePair.Create(s.Key, (string?)s.Value))).Build();

    [Theory]
    [InlineData(AkkaLogLevel.InfoLevel, "Logging:LogLevel:Default=Warning", "Logging:LogLevel:Akka=Information")]
    [InlineData(AkkaLogLevel.ErrorLevel, "Logging:LogLevel:Default=Information", "Logging:LogLevel:Akka=Error", "Logging:LogLevel:GanCluster=Error")]
    // Our actors log through Akka: their category keeps Akka's bus at its level.
    [InlineData(AkkaLogLevel.WarningLevel, "Logging:LogLevel:Default=Error", "Logging:LogLevel:Akka=Error", "Logging:LogLevel:GanCluster=Warning")]
    // A single Akka category more verbose than the rest, here for the console provider only.
    [InlineData(AkkaLogLevel.DebugLevel, "Logging:LogLevel:Default=Warning", "Logging:Console:LogLevel:Akka.Remote=Debug")]
    [InlineData(AkkaLogLevel.ErrorLevel, "Logging:LogLevel:Default=None")]
    public void Akkas_own_level_follows_the_most_verbose_category_it_carries(AkkaLogLevel expected, params string[] settings)
    {
        var config = Config(settings.Select(s => (s.Split('=')[0], s.Split('=')[1])).ToArray());
        using var loggers = LoggerFactory.Create(l => l.AddConfiguration(config.GetSection("Logging")).AddConsole());
        Assert.Equal(expected, TelemetryHosting.AkkaLevel(loggers, config));
    }

    [Fact]
    public void A_metrics_port_or_address_that_cannot_be_used_is_refused_naming_its_option()
    {
        var (_, problems) = NodeOptions.Bind(Config(("Node:Seeds", "a:4053"), ("Node:Insecure", "true"), ("Node:MetricsPort", "70000"), ("Node:MetricsHost", "localhost")));
        Assert.Contains("Node:MetricsPort must be 0 (no metrics endpoint) or a port 1-65535 (got 70000)", problems);
        Assert.Contains("Node:MetricsHost must be an IP address to bind to, such as 127.0.0.1 or 0.0.0.0 (got \"localhost\")", problems);

        // A port in use: the node stops at start with one message naming the option (exit 2), before joining anything.
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        using var taken = new TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var busy = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var port = NodeProcesses.FreePort();
        var seed = nodes.StartNode(SeedEnvironment(port, dir.Path, ("GANCLUSTER_Node__MetricsPort", busy.ToString())), dir.Path, "busy-metrics");
        nodes.WaitFor(() => NodeProcesses.Exited(seed), TimeSpan.FromMinutes(1), "the node to refuse the port");
        Assert.Contains($"error: Node:MetricsPort {busy} on Node:MetricsHost 127.0.0.1: cannot listen", nodes.Log(seed));
        Assert.DoesNotContain("Remoting started", nodes.Log(seed));
    }

    [Fact]
    public void A_seed_with_Akka_at_Error_in_json_prints_one_json_object_per_line_and_no_Akka_information()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        var port = NodeProcesses.FreePort();
        var seed = nodes.StartNode(SeedEnvironment(port, dir.Path,
            ("GANCLUSTER_Logging__LogLevel__Akka", "Error"), ("GANCLUSTER_Logging__Console__FormatterName", "json")), dir.Path, "json-seed");
        // Akka prints nothing at Information to wait for: the seed is up when a client gets its status.
        nodes.WaitFor(() => CliProcess.Run(["status", "--cluster", $"127.0.0.1:{port}", "--connect-timeout", "5"], timeoutSeconds: 60).StdOut.Contains("workers 0"),
            TimeSpan.FromMinutes(2), "the seed answering");
        nodes.Terminate(seed);
        nodes.WaitFor(() => NodeProcesses.Exited(seed), TimeSpan.FromMinutes(1), "the seed to stop on SIGTERM");

        var log = nodes.Log(seed);
        var entries = log.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line =>
        {
            try
            {
                using var json = JsonDocument.Parse(line);
                var root = json.RootElement;
                return (Level: root.GetProperty("LogLevel").GetString()!, Category: root.GetProperty("Category").GetString()!, Message: root.GetProperty("Message").GetString()!);
            }
            catch (JsonException e)
            {
                throw new Xunit.Sdk.XunitException($"not one JSON object: {line} ({e.Message})\n{log}");
            }
        }).ToList();
        // Our own lines at Information, from the host and from an actor (which logs through Akka's bus)...
        Assert.Contains(entries, e => e is { Level: "Information", Category: "GanCluster.Node" } && e.Message.StartsWith("roles seed, akka.ssl.tcp://gancluster@127.0.0.1:", StringComparison.Ordinal));
        Assert.Contains(entries, e => e is { Level: "Information", Category: "GanCluster.Actors.Coordinator.CoordinatorActor" } && e.Message.StartsWith("coordinator started on", StringComparison.Ordinal));
        // ...and none of Akka's below Error, although Akka logs its start and stop at Information by default.
        Assert.DoesNotContain(entries, e => e.Category.StartsWith("Akka", StringComparison.Ordinal) && e.Level is not ("Error" or "Critical"));
        Assert.DoesNotContain("Remoting started", log);
    }

    [Fact]
    public async Task After_a_run_the_metrics_endpoints_serve_step_and_all_reduce_metrics_and_a_sigterm_stop_logs_no_error()
    {
        using var nodes = new NodeProcesses();
        var port = NodeProcesses.FreePort();
        var seedMetrics = NodeProcesses.FreePort();
        nodes.ExtraArgs.Add($"--Node:MetricsPort={seedMetrics}");
        var seed = nodes.StartSeed(port);
        nodes.ExtraArgs.Clear();
        var workerMetrics = new[] { NodeProcesses.FreePort(), NodeProcesses.FreePort() };
        var workers = workerMetrics.Select(m => nodes.StartWorkerWith(port, $"--Node:MetricsPort={m}")).ToList();
        nodes.WaitForWorkers(port, 2);

        const int iterations = 40;
        var spec = Path.Combine(nodes.Logs, "telemetry.json");
        File.WriteAllText(spec, $$"""
            { "name": "telemetry", "dataset": { "kind": "ring8", "size": 2000 }, "model": { "kind": "mlp", "nz": 4, "ngf": 16, "ndf": 16 },
              "training": { "k": 1, "iterations": {{iterations}}, "batchSize": 32, "seed": 5, "logEvery": 20 }, "checkpoint": { "every": 20 },
              "output": "telemetry" }
            """);
        var run = await Task.Run(() => CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 300));
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        foreach (var m in workerMetrics)
        {
            var text = await http.GetStringAsync($"http://127.0.0.1:{m}/metrics");
            Assert.Contains("# TYPE gancluster_worker_update_duration_seconds histogram", text);
            // k = 1: every iteration is one D and one G update on every rank, each with one all-reduce of its gradients.
            Assert.Equal(iterations, Sample(text, "gancluster_worker_update_duration_seconds_count", "phase=\"D\""));
            Assert.Equal(iterations, Sample(text, "gancluster_worker_update_duration_seconds_count", "phase=\"G\""));
            Assert.True(Sample(text, "gancluster_worker_update_duration_seconds_sum", "phase=\"D\"") > 0, text);
            Assert.True(Sample(text, "gancluster_allreduce_duration_seconds_count") >= 2 * iterations, text);
            Assert.True(Sample(text, "gancluster_allreduce_duration_seconds_sum") > 0, text);
            Assert.True(Sample(text, "gancluster_allreduce_payload_bytes_total") > 0, text);
            Assert.True(Sample(text, "gancluster_worker_coordinator_wait_duration_seconds_count") > 0, text);
            Assert.True(Sample(text, "gancluster_process_memory_working_set_bytes") > 0, text);
        }
        var coordinator = await http.GetStringAsync($"http://127.0.0.1:{seedMetrics}/metrics");
        Assert.Equal(2, Sample(coordinator, "gancluster_coordinator_checkpoint_saves_total", "outcome=\"written\""));   // iterations 20 and 40
        Assert.Equal(1, Sample(coordinator, "gancluster_coordinator_checkpoint_stall_duration_seconds_count"));        // the last is the run's end
        Assert.Equal(0, Sample(coordinator, "gancluster_coordinator_worker_failures_total"));
        Assert.Equal(0, Sample(coordinator, "gancluster_coordinator_reforms_total"));

        // A clean stop, as the scripts and Kubernetes do it: SIGTERM to the workers, then to the seed.
        foreach (var w in workers) nodes.Terminate(w);
        nodes.WaitFor(() => workers.All(NodeProcesses.Exited), TimeSpan.FromMinutes(2), "the workers to stop on SIGTERM");
        nodes.Terminate(seed);
        nodes.WaitFor(() => NodeProcesses.Exited(seed), TimeSpan.FromMinutes(2), "the seed to stop on SIGTERM");
        foreach (var pid in workers.Append(seed))
        {
            var log = nodes.Log(pid);
            Assert.Contains("Remoting shut down", log);                                // the log covers the whole stop
            Assert.DoesNotContain("failed to find", log);
            Assert.False(ErrorLine().IsMatch(log), $"an error in a clean start and stop:\n{log}");
        }
    }

    /// <summary>The value of the one sample of <paramref name="name"/> whose labels contain <paramref name="label"/>.</summary>
    static double Sample(string text, string name, string label = "")
    {
        var values = text.Split('\n').Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal))
            .Where(l => l.Contains(label, StringComparison.Ordinal)).Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture)).ToList();
        Assert.True(values.Count == 1, $"{values.Count} samples of {name} {label} in:\n{text}");
        return values[0];
    }

    /// <summary>A seed configured by environment only, as a container runs it.</summary>
    static Dictionary<string, string> SeedEnvironment(int port, string dir, params (string Key, string Value)[] extra)
    {
        var env = new Dictionary<string, string>
        {
            ["GANCLUSTER_Node__Roles"] = "seed",
            ["GANCLUSTER_Node__Port"] = port.ToString(),
            ["GANCLUSTER_Node__Seeds"] = $"127.0.0.1:{port}",
            ["GANCLUSTER_Node__StateDir"] = Path.Combine(dir, "state"),
            ["GANCLUSTER_Node__Credentials"] = TestCredentials.Folder,
        };
        foreach (var (k, v) in extra) env[k] = v;
        return env;
    }

    /// <summary>An error line of the simple console format ("… fail: Category[0] …"), or Akka's own plain format.</summary>
    [GeneratedRegex(@"^\S+ \S+ (fail|crit): |\[ERROR\]", RegexOptions.Multiline)]
    private static partial Regex ErrorLine();
}
