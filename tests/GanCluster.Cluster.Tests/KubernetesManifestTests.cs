using System.Text.RegularExpressions;
using GanCluster.Node;
using Microsoft.Extensions.Configuration;
using YamlDotNet.RepresentationModel;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The Kubernetes manifests (cluster-config/kubernetes) against the code: every setting they pass is a node option and
/// validates, the seed list names the seed pods, and a graceful leave fits the grace period. Then real processes
/// configured only by the manifests' environment, as the containers are, form a cluster and train a run. No Kubernetes
/// here: pod addresses become loopback, the seed's DNS name becomes <c>localhost</c>, port 4053 a free port.
/// </summary>
[Collection("processes")]
public partial class KubernetesManifestTests
{
    sealed record Pod(string File, string Kind, string Name, int Replicas, string? ServiceName, int GracePeriod, YamlSequenceNode Env,
        YamlMappingNode Container, YamlMappingNode Spec);

    static string Folder => Path.Combine(NodeProcesses.FindRoot(), "cluster-config", "kubernetes");

    static IEnumerable<(string File, YamlMappingNode Doc)> Documents() =>
        Directory.GetFiles(Folder, "*.yaml").SelectMany(f =>
        {
            var stream = new YamlStream();
            using var reader = new StreamReader(f);
            stream.Load(reader);
            return stream.Documents.Select(d => (Path.GetFileName(f), (YamlMappingNode)d.RootNode));
        });

    static YamlNode At(YamlNode node, params string[] path) => path.Aggregate(node, (n, key) => ((YamlMappingNode)n).Children[new YamlScalarNode(key)]);
    static YamlNode? Try(YamlNode node, string key) => ((YamlMappingNode)node).Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;
    static string Text(YamlNode node) => ((YamlScalarNode)node).Value!;

    static List<Pod> Pods() =>
        Documents().Where(x => Text(At(x.Doc, "kind")) is "Deployment" or "StatefulSet").SelectMany(x =>
        {
            var d = x.Doc;
            var spec = At(d, "spec", "template", "spec");
            return ((YamlSequenceNode)At(spec, "containers")).Select(c => new Pod(
                x.File, Text(At(d, "kind")), Text(At(d, "metadata", "name")),
                int.Parse(Text(At(d, "spec", "replicas"))), Try(At(d, "spec"), "serviceName") is { } s ? Text(s) : null,
                Try(spec, "terminationGracePeriodSeconds") is { } g ? int.Parse(Text(g)) : 30, (YamlSequenceNode)At(c, "env"),
                (YamlMappingNode)c, (YamlMappingNode)spec));
        }).ToList();

    /// <summary>The container's environment as the kubelet makes it: downward-API fields from <paramref name="field"/>, then $(VAR) expanded.</summary>
    static Dictionary<string, string> Environment(Pod pod, Func<string, string> field)
    {
        var env = new Dictionary<string, string>();
        foreach (var entry in pod.Env.Cast<YamlMappingNode>())
        {
            var value = Try(entry, "value") is { } v ? Text(v) : field(Text(At(entry, "valueFrom", "fieldRef", "fieldPath")));
            env[Text(At(entry, "name"))] = VarRegex().Replace(value, m => env.TryGetValue(m.Groups[1].Value, out var x) ? x : m.Value);
        }
        return env;
    }

    /// <summary>Pod values for the first pod of a workload.</summary>
    static string InCluster(Pod pod, string field) => field switch
    {
        "metadata.name" => pod.Kind == "StatefulSet" ? $"{pod.Name}-0" : $"{pod.Name}-7d9f8-x2x4q",
        "status.podIP" => "10.244.1.17",
        _ => throw new InvalidOperationException($"{pod.File}: no test value for fieldRef {field}"),
    };

    static (NodeOptions Options, List<string> Problems) Bind(Dictionary<string, string> env) =>
        NodeOptions.Bind(new ConfigurationBuilder()
            .AddInMemoryCollection(env.Where(e => e.Key.StartsWith("GANCLUSTER_", StringComparison.Ordinal))
                .Select(e => KeyValuePair.Create(e.Key["GANCLUSTER_".Length..].Replace("__", ":"), (string?)e.Value)))
            .Build());

    [Fact]
    public void Every_setting_the_manifests_pass_is_a_node_option_that_validates_and_the_seed_list_names_the_seed_pods()
    {
        var pods = Pods();
        Assert.Contains(pods, p => p.Kind == "StatefulSet");
        Assert.Contains(pods, p => p.Kind == "Deployment");
        var services = Documents().Select(x => x.Doc).Where(d => Text(At(d, "kind")) == "Service").ToDictionary(d => Text(At(d, "metadata", "name")));
        foreach (var pod in pods)
        {
            var (options, problems) = Bind(Environment(pod, f => InCluster(pod, f)));
            Assert.True(problems.Count == 0, $"{pod.File} {pod.Name}: {string.Join("; ", problems)}");
            Assert.Equal("0.0.0.0", options.Host);                                  // the pod's address is only known at run time

            // Mutual TLS: Node:Credentials is a read-only mount of the cluster's Secret, never an image's file.
            Assert.False(options.Insecure, $"{pod.File} {pod.Name}: Node:Insecure");
            var mount = ((YamlSequenceNode)At(pod.Container, "volumeMounts")).Cast<YamlMappingNode>()
                .Single(m => Text(At(m, "mountPath")) == options.Credentials);
            Assert.Equal("true", Text(At(mount, "readOnly")));
            var volume = ((YamlSequenceNode)At(pod.Spec, "volumes")).Cast<YamlMappingNode>().Single(v => Text(At(v, "name")) == Text(At(mount, "name")));
            Assert.Equal("gancluster-credentials", Text(At(volume, "secret", "secretName")));

            // Every seed entry is a pod of a seed StatefulSet under its headless service, on that service's port.
            foreach (var (host, port) in options.SeedList)
            {
                var seed = pods.Single(p => p.Kind == "StatefulSet" && host.StartsWith(p.Name + "-", StringComparison.Ordinal));
                Assert.Equal($"{seed.Name}-{host[(seed.Name.Length + 1)..host.IndexOf('.')]}.{seed.ServiceName}", host);
                Assert.InRange(int.Parse(host[(seed.Name.Length + 1)..host.IndexOf('.')]), 0, seed.Replicas - 1);
                var service = services[seed.ServiceName!];
                Assert.Equal("None", Text(At(service, "spec", "clusterIP")));
                Assert.Contains(((YamlSequenceNode)At(service, "spec", "ports")).Cast<YamlMappingNode>(), p => Text(At(p, "port")) == port.ToString());
            }
            if (options.IsSeed)
            {
                // A seed's own address must be exactly its entry in the list, or it never joins itself.
                Assert.Contains(new GanCluster.Actors.HostPort(options.EffectivePublicHost, options.Port), options.SeedList);
            }
            if (options.IsWorker)
            {
                // SIGTERM: the node waits up to StepTimeoutSeconds + 60 s to leave its run; the pod must not be killed first.
                Assert.True(pod.GracePeriod >= options.StepTimeoutSeconds + 60,
                    $"{pod.File}: terminationGracePeriodSeconds {pod.GracePeriod} < Node:StepTimeoutSeconds {options.StepTimeoutSeconds} + 60");
            }
        }
    }

    [Fact]
    public void A_misspelt_or_mistyped_node_setting_is_refused_with_its_name()
    {
        var (_, problems) = Bind(new() { ["GANCLUSTER_Node__Seed"] = "a:4053", ["GANCLUSTER_Node__Port"] = "forty", ["GANCLUSTER_Node__Seeds"] = "a:4053" });
        Assert.Contains(problems, p => p.StartsWith("Node:Seed is not a node setting (known: Roles, Host, Port", StringComparison.Ordinal));
        Assert.Contains("Node:Port must be a whole number (got \"forty\")", problems);

        var (_, invalid) = Bind(new() { ["GANCLUSTER_Node__Roles"] = "seed", ["GANCLUSTER_Node__Seeds"] = "a", ["GANCLUSTER_Node__CpuThreads"] = "-1" });
        Assert.Contains("Node:Port must be fixed (not 0) on a seed: workers and clients connect to it", invalid);
        Assert.Contains("Node:Seeds entry \"a\" must be host:port", invalid);
        Assert.Contains("Node:CpuThreads must be 0 (default) or more (got -1)", invalid);
    }

    [Fact]
    public async Task A_seed_and_two_workers_configured_only_by_the_manifests_environment_train_a_run_to_the_end()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        var pods = Pods();
        var seedPod = pods.Single(p => p.Kind == "StatefulSet");
        var workerPod = pods.Single(p => p.Kind == "Deployment" && Environment(p, f => InCluster(p, f))["GANCLUSTER_Node__Devices"] == "cpu");
        var port = NodeProcesses.FreePort();

        // The manifests' environment with this machine's values: the only edits are addresses, the port and folders.
        Dictionary<string, string> Local(Pod pod, int index) => Environment(pod, f => f == "status.podIP" ? "127.0.0.1" : InCluster(pod, f))
            .ToDictionary(e => e.Key, e => e.Key switch
            {
                "GANCLUSTER_Node__StateDir" => Path.Combine(dir.Path, "state"),
                "GANCLUSTER_Node__CpuThreads" => "1",                               // two workers on this machine's cores
                "GANCLUSTER_Node__Credentials" => TestCredentials.Folder,           // the Secret's mount
                "GANCLUSTER_Node__MetricsPort" => NodeProcesses.FreePort().ToString(), // one port per pod, three pods on one machine
                _ => SeedHostRegex().Replace(e.Value, "localhost").Replace("4053", port.ToString()),
            });
        var seed = nodes.StartNode(Local(seedPod, 0), dir.Path, "k8s-seed");
        var workers = Enumerable.Range(0, 2).Select(i => nodes.StartNode(Local(workerPod, i), dir.Path, $"k8s-worker-{i}")).ToList();
        nodes.WaitFor(() => nodes.Log(seed).Contains("coordinator started on akka.ssl.tcp://gancluster@localhost:"), TimeSpan.FromMinutes(2), "the seed up as localhost");
        var cluster = $"localhost:{port}";
        nodes.WaitFor(() => CliProcess.Run(["status", "--cluster", cluster, "--connect-timeout", "5"], timeoutSeconds: 60).StdOut.Contains("workers 2"),
            TimeSpan.FromMinutes(3), "2 workers registered");

        var spec = Path.Combine(dir.Path, "spec.json");
        // Relative: under the seed's Node:RunsRoot, its working directory (as /app in the image).
        File.WriteAllText(spec, """
            { "name": "k8s", "dataset": { "kind": "ring8", "size": 4000 }, "model": { "kind": "mlp", "nz": 4, "ngf": 32, "ndf": 32 },
              "training": { "iterations": 300, "batchSize": 64, "seed": 5, "logEvery": 100 }, "checkpoint": { "every": 300 },
              "output": "out" }
            """);
        var run = await Task.Run(() => CliProcess.Run(["submit", spec, "--cluster", cluster, "--wait"], timeoutSeconds: 300));
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("completed: 300 iterations on 2 worker(s)", run.StdOut);
        var checksum = ChecksumRegex().Match(run.StdOut).Groups[1].Value;
        Assert.All(workers, w => Assert.Contains($"final parameter checksum {checksum}", nodes.Log(w)));
        Assert.All(workers, w => Assert.Matches(@"data plane 127\.0\.0\.1:\d+", nodes.Log(w)));   // the ring is reached at the pod IP
    }

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VarRegex();

    [GeneratedRegex(@"gancluster-seed-\d+\.gancluster-seed")]
    private static partial Regex SeedHostRegex();

    [GeneratedRegex("final parameter checksum ([0-9a-f]{64})")]
    private static partial Regex ChecksumRegex();
}
