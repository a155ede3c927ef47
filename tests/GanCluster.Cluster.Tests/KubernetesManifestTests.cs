using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using GanCluster.Node;
using Microsoft.Extensions.Configuration;
using YamlDotNet.RepresentationModel;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The Kubernetes manifests against the code, as Kubernetes gets them: every Kustomize overlay as rendered into
/// cluster-config/kubernetes/rendered/ (scripts/check-k8s-manifests.sh renders them, checks rendered/ is current and
/// validates them against Kubernetes' schemas). Every setting is a node option that validates; discovery, probes,
/// ports, NetworkPolicy, PodDisruptionBudget, securityContext, volumes and the grace period fit the node's options.
/// Then real processes configured only by the cpu overlay's environment, as the containers are, form a cluster through
/// the same bootstrap path (config discovery instead of the Kubernetes API), answer their health checks and the HTTP
/// API, and train a run. No Kubernetes here: pod addresses become loopback, fixed ports free ports.
/// </summary>
[Collection("processes")]
public partial class KubernetesManifestTests
{
    sealed record Pod(string Overlay, string Kind, string Name, int Replicas, YamlMappingNode Workload, YamlMappingNode Spec,
        YamlMappingNode Container, IReadOnlyDictionary<string, string> Labels);

    static string Folder => Path.Combine(NodeProcesses.FindRoot(), "cluster-config", "kubernetes");

    static List<string> Overlays() =>
        Directory.GetDirectories(Path.Combine(Folder, "overlays")).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList();

    static List<YamlMappingNode> Rendered(string overlay)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(Path.Combine(Folder, "rendered", overlay + ".yaml"));
        stream.Load(reader);
        return stream.Documents.Select(d => (YamlMappingNode)d.RootNode).ToList();
    }

    static YamlNode At(YamlNode node, params string[] path) => path.Aggregate(node, (n, key) =>
        ((YamlMappingNode)n).Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : throw new KeyNotFoundException($"no {key} in {n.Start}"));
    static YamlNode? Try(YamlNode node, params string[] path)
    {
        foreach (var key in path)
            if (node is not YamlMappingNode m || !m.Children.TryGetValue(new YamlScalarNode(key), out node!)) return null;
        return node;
    }
    static string Text(YamlNode node) => ((YamlScalarNode)node).Value!;
    static string? TextAt(YamlNode node, params string[] path) => Try(node, path) is YamlScalarNode s ? s.Value : null;
    static IEnumerable<YamlMappingNode> Items(YamlNode node, params string[] path) =>
        Try(node, path) is YamlSequenceNode s ? s.Cast<YamlMappingNode>() : [];
    static Dictionary<string, string> Map(YamlNode? node) =>
        node is YamlMappingNode m ? m.Children.ToDictionary(c => Text(c.Key), c => Text(c.Value)) : [];
    static string Kind(YamlNode doc) => Text(At(doc, "kind"));
    static string Name(YamlNode doc) => Text(At(doc, "metadata", "name"));

    static List<Pod> Pods(string overlay, List<YamlMappingNode> docs) =>
        docs.Where(d => Kind(d) is "Deployment" or "StatefulSet").SelectMany(d =>
        {
            var spec = (YamlMappingNode)At(d, "spec", "template", "spec");
            return Items(spec, "containers").Select(c => new Pod(overlay, Kind(d), Name(d), int.Parse(TextAt(d, "spec", "replicas") ?? "1"),
                d, spec, c, Map(Try(d, "spec", "template", "metadata", "labels"))));
        }).ToList();

    /// <summary>The container's environment as the kubelet makes it: downward-API fields from <paramref name="field"/>, then $(VAR) expanded.</summary>
    static Dictionary<string, string> Environment(Pod pod, Func<string, string> field)
    {
        var env = new Dictionary<string, string>();
        foreach (var entry in Items(pod.Container, "env"))
        {
            var value = TextAt(entry, "value") ?? field(Text(At(entry, "valueFrom", "fieldRef", "fieldPath")));
            env[Text(At(entry, "name"))] = VarRegex().Replace(value, m => env.TryGetValue(m.Groups[1].Value, out var x) ? x : m.Value);
        }
        return env;
    }

    /// <summary>Pod values for a pod of a workload.</summary>
    static string InCluster(Pod pod, string field) => field switch
    {
        "metadata.name" => pod.Kind == "StatefulSet" ? $"{pod.Name}-0" : $"{pod.Name}-7d9f8-x2x4q",
        "status.podIP" => "10.244.1.17",
        _ => throw new InvalidOperationException($"{pod.Overlay} {pod.Name}: no test value for fieldRef {field}"),
    };

    static (NodeOptions Options, List<string> Problems) Bind(Dictionary<string, string> env) =>
        NodeOptions.Bind(new ConfigurationBuilder()
            .AddInMemoryCollection(env.Where(e => e.Key.StartsWith("GANCLUSTER_", StringComparison.Ordinal))
                .Select(e => KeyValuePair.Create(e.Key["GANCLUSTER_".Length..].Replace("__", ":"), (string?)e.Value)))
            .Build());

    /// <summary>The uid and gid of a Dockerfile's final USER line.</summary>
    static (int Uid, int Gid) ImageUser(string dockerfile)
    {
        var user = File.ReadAllLines(Path.Combine(NodeProcesses.FindRoot(), "docker", dockerfile)).Last(l => l.StartsWith("USER ", StringComparison.Ordinal))[5..].Trim().Split(':');
        return (int.Parse(user[0]), int.Parse(user[1]));
    }

    static Dictionary<string, int> ContainerPorts(Pod pod) =>
        Items(pod.Container, "ports").ToDictionary(p => TextAt(p, "name") ?? "", p => int.Parse(Text(At(p, "containerPort"))));

    static bool Selects(IReadOnlyDictionary<string, string> selector, IReadOnlyDictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(s => labels.TryGetValue(s.Key, out var v) && v == s.Value);

    [Fact]
    public void Every_overlay_is_rendered_and_its_pods_settings_are_node_options_that_fit_the_manifests()
    {
        var overlays = Overlays();
        Assert.Equal(["cpu", "gpu", "two-seeds"], overlays);
        Assert.Equal(overlays.Select(o => o + ".yaml"), Directory.GetFiles(Path.Combine(Folder, "rendered"), "*.yaml").Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var (imageUid, imageGid) = ImageUser("Dockerfile.cpu");
        foreach (var overlay in overlays)
        {
            var docs = Rendered(overlay);
            var pods = Pods(overlay, docs);
            var seeds = pods.Where(p => p.Kind == "StatefulSet").ToList();
            var workers = pods.Where(p => p.Kind == "Deployment").ToList();
            Assert.Single(seeds);
            Assert.NotEmpty(workers);
            Assert.DoesNotContain(docs, d => Try(d, "metadata", "namespace") is not null);    // namespace-agnostic
            var services = docs.Where(d => Kind(d) == "Service").ToDictionary(Name);
            var policy = docs.Single(d => Kind(d) == "NetworkPolicy");
            var pdb = docs.Single(d => Kind(d) == "PodDisruptionBudget");
            foreach (var pod in pods)
            {
                var where = $"{overlay}: {pod.Kind} {pod.Name}";
                var (options, problems) = Bind(Environment(pod, f => InCluster(pod, f)));
                Assert.True(problems.Count == 0, $"{where}: {string.Join("; ", problems)}");
                Assert.Equal("0.0.0.0", options.Host);                                  // the pod's address is only known at run time
                Assert.Equal("10.244.1.17", options.EffectivePublicHost);               // Akka and the ring reach the pod at its IP

                // Mutual TLS: Node:Credentials is a read-only mount of the cluster's Secret, never an image's file.
                Assert.False(options.Insecure, $"{where}: Node:Insecure");
                var mounts = Items(pod.Container, "volumeMounts").ToList();
                var mount = mounts.Single(m => Text(At(m, "mountPath")) == options.Credentials);
                Assert.Equal("true", TextAt(mount, "readOnly"));
                var volumes = Items(pod.Spec, "volumes").ToDictionary(v => Text(At(v, "name")));
                Assert.Equal("gancluster-credentials", TextAt(volumes[Text(At(mount, "name"))], "secret", "secretName"));

                // Bootstrap through the Kubernetes API: the label selector finds exactly the seed pods, whose container
                // port named "management" is Node:ManagementPort; the pod's service account may list pods.
                Assert.Equal("kubernetes", options.Discovery);
                var selector = options.DiscoveryLabelSelector.Split(',').Select(s => s.Split('=')).ToDictionary(s => s[0].Trim(), s => s[1].Trim());
                Assert.All(seeds, s => Assert.True(Selects(selector, s.Labels), $"{where}: Node:DiscoveryLabelSelector {options.DiscoveryLabelSelector} misses {s.Name}"));
                Assert.All(workers, w => Assert.False(Selects(selector, w.Labels), $"{where}: Node:DiscoveryLabelSelector selects the workers {w.Name}"));
                var ports = ContainerPorts(pod);
                Assert.Equal(options.ManagementPort, ports["management"]);
                Assert.Equal(options.Port, ports["akka"]);
                Assert.Equal(options.EffectivePublicHost, options.ManagementHost);
                var account = TextAt(pod.Spec, "serviceAccountName");
                Assert.Contains(docs, d => Kind(d) == "ServiceAccount" && Name(d) == account);
                var binding = docs.Single(d => Kind(d) == "RoleBinding" && Items(d, "subjects").Any(s => TextAt(s, "name") == account));
                var role = docs.Single(d => Kind(d) == "Role" && Name(d) == TextAt(binding, "roleRef", "name"));
                Assert.Contains(Items(role, "rules"), r => ((YamlSequenceNode)At(r, "resources")).Any(x => Text(x) == "pods")
                    && new[] { "get", "list", "watch" }.All(v => ((YamlSequenceNode)At(r, "verbs")).Any(x => Text(x) == v)));

                // Health: liveness and startup on /alive, readiness on /ready, all on the management port. Loading libtorch
                // and joining get minutes; a busy node gets a minute of silence before a restart.
                foreach (var (probe, path) in new[] { ("startupProbe", "/alive"), ("livenessProbe", "/alive"), ("readinessProbe", "/ready") })
                {
                    Assert.Equal(path, TextAt(pod.Container, probe, "httpGet", "path"));
                    Assert.Equal("management", TextAt(pod.Container, probe, "httpGet", "port"));
                }
                int Window(string probe) => int.Parse(TextAt(pod.Container, probe, "periodSeconds") ?? "10") * int.Parse(TextAt(pod.Container, probe, "failureThreshold") ?? "3");
                Assert.InRange(Window("startupProbe"), 120, 900);
                Assert.InRange(Window("livenessProbe"), 60, 600);

                // SIGTERM: the node waits up to StepTimeoutSeconds + 60 s (Program.cs: the host's shutdown timeout) to
                // leave; the preStop runs before it. The pod must not be killed first.
                var grace = int.Parse(TextAt(pod.Spec, "terminationGracePeriodSeconds") ?? "30");
                var preStop = Try(pod.Container, "lifecycle", "preStop", "exec", "command") is YamlSequenceNode cmd && Text(cmd[0]) == "sleep" ? int.Parse(Text(cmd[1])) : 0;
                Assert.True(grace >= preStop + options.StepTimeoutSeconds + 60,
                    $"{where}: terminationGracePeriodSeconds {grace} < preStop {preStop} + Node:StepTimeoutSeconds {options.StepTimeoutSeconds} + 60");

                // Non-root as the images' user, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp.
                Assert.Equal("true", TextAt(pod.Spec, "securityContext", "runAsNonRoot"));
                Assert.Equal(imageUid.ToString(), TextAt(pod.Spec, "securityContext", "runAsUser"));
                Assert.Equal(imageGid.ToString(), TextAt(pod.Spec, "securityContext", "runAsGroup"));
                Assert.Equal(imageGid.ToString(), TextAt(pod.Spec, "securityContext", "fsGroup"));
                Assert.Equal("RuntimeDefault", TextAt(pod.Spec, "securityContext", "seccompProfile", "type"));
                Assert.Equal("true", TextAt(pod.Container, "securityContext", "readOnlyRootFilesystem"));
                Assert.Equal("false", TextAt(pod.Container, "securityContext", "allowPrivilegeEscalation"));
                Assert.Equal(["ALL"], ((YamlSequenceNode)At(pod.Container, "securityContext", "capabilities", "drop")).Select(Text));
                // ...so every folder the node writes is a writable mount.
                var env = Environment(pod, f => InCluster(pod, f));
                var written = new List<string> { "/tmp", env["XDG_CACHE_HOME"], env["GANCLUSTER_NATIVE_CACHE"] };
                if (options.IsSeed) written.AddRange([options.StateDir, options.RunsRoot]);
                foreach (var dir in written)
                    Assert.True(mounts.Any(m => TextAt(m, "readOnly") != "true" && (dir + "/").StartsWith(Text(At(m, "mountPath")).TrimEnd('/') + "/", StringComparison.Ordinal)),
                        $"{where}: {dir} is written but on the read-only root filesystem");

                // NetworkPolicy: Akka, management and the ring ports admitted from this app's pods.
                var rule = Items(policy, "spec", "ingress").Single(r => Items(r, "from").Any(f => Try(f, "podSelector") is not null));
                Assert.True(Selects(Map(Try(At(policy, "spec"), "podSelector", "matchLabels")), pod.Labels), $"{where}: the NetworkPolicy does not select it");
                Assert.True(Selects(Map(Try(Items(rule, "from").Single(), "podSelector", "matchLabels")), pod.Labels), $"{where}: the NetworkPolicy's peers exclude it");
                bool Admits(int port) => Items(rule, "ports").Any(p => int.Parse(Text(At(p, "port"))) <= port && port <= int.Parse(TextAt(p, "endPort") ?? Text(At(p, "port"))));
                Assert.True(Admits(options.Port), $"{where}: NetworkPolicy misses Node:Port {options.Port}");
                Assert.True(Admits(options.ManagementPort), $"{where}: NetworkPolicy misses Node:ManagementPort {options.ManagementPort}");

                if (options.IsSeed)
                {
                    // The HTTP API: container port "http", the ClusterIP Service gancluster-seed for port-forward.
                    Assert.Equal(options.HttpPort, ports["http"]);
                    Assert.Contains(Items(services["gancluster-seed"], "spec", "ports"), p => TextAt(p, "targetPort") == "http" && Text(At(p, "port")) == options.HttpPort.ToString());
                    Assert.True(Selects(Map(Try(services["gancluster-seed"], "spec", "selector")), pod.Labels));
                    var headless = services[Text(At(pod.Workload, "spec", "serviceName"))];
                    Assert.Equal("None", TextAt(headless, "spec", "clusterIP"));
                    Assert.Equal("true", TextAt(headless, "spec", "publishNotReadyAddresses"));
                    Assert.True(Selects(Map(Try(pdb, "spec", "selector", "matchLabels")), pod.Labels), $"{where}: the PodDisruptionBudget does not cover the seeds");
                    Assert.InRange(options.RequiredContacts, 1, pod.Replicas);
                    if (pod.Replicas > 1)
                    {
                        // Several seeds: all found before the first cluster forms, started together, one shared volume.
                        Assert.Equal(pod.Replicas, options.RequiredContacts);
                        Assert.Equal("Parallel", TextAt(pod.Workload, "spec", "podManagementPolicy"));
                        Assert.Null(Try(pod.Workload, "spec", "volumeClaimTemplates"));
                        var data = mounts.Single(m => (options.StateDir + "/").StartsWith(Text(At(m, "mountPath")).TrimEnd('/') + "/", StringComparison.Ordinal));
                        Assert.True((options.RunsRoot + "/").StartsWith(Text(At(data, "mountPath")).TrimEnd('/') + "/", StringComparison.Ordinal), $"{where}: runs and state on different volumes");
                        var claim = TextAt(volumes[Text(At(data, "name"))], "persistentVolumeClaim", "claimName");
                        var pvc = docs.Single(d => Kind(d) == "PersistentVolumeClaim" && Name(d) == claim);
                        Assert.Equal(["ReadWriteMany"], ((YamlSequenceNode)At(pvc, "spec", "accessModes")).Select(Text));
                    }
                }
                else
                {
                    Assert.Equal(0, options.HttpPort);
                    // Every worker device's ring port is admitted.
                    Assert.True(NodeOptions.TryParseDataPorts(options.DataPorts, out var range) && range is not null, $"{where}: Node:DataPorts must be fixed for the NetworkPolicy");
                    Assert.All(Enumerable.Range(range.Value.First, range.Value.Count), p => Assert.True(Admits(p), $"{where}: NetworkPolicy misses ring port {p}"));
                    var image = Text(At(pod.Container, "image"));
                    if (image.EndsWith(":gpu", StringComparison.Ordinal))
                    {
                        Assert.Equal("all", options.Devices);
                        Assert.Equal("1", TextAt(pod.Container, "resources", "limits", "nvidia.com/gpu"));
                    }
                    else Assert.Equal("cpu", options.Devices);
                }
            }
            if (overlay == "gpu") Assert.Contains(workers, w => Text(At(w.Container, "image")) == "gancluster:gpu");
        }
    }

    [Fact]
    public void The_images_run_as_one_fixed_non_root_user_and_the_build_context_leaves_credentials_out()
    {
        var root = NodeProcesses.FindRoot();
        var users = new[] { "Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.gpu-torchsharp" }.Select(ImageUser).Distinct().ToList();
        Assert.Single(users);
        Assert.NotEqual(0, users[0].Uid);
        // The GPU image loads libtorch from its PyTorch install (the path that ran on a GPU); the TorchSharp one bundles it.
        var gpu = File.ReadAllText(Path.Combine(root, "docker", "Dockerfile.gpu"));
        Assert.Matches(@"ENV TORCH_LIB_DIR=\S+", gpu);
        Assert.Contains("-p:TorchBackend=none", gpu);
        Assert.Contains("-p:TorchBackend=cuda", File.ReadAllText(Path.Combine(root, "docker", "Dockerfile.gpu-torchsharp")));
        // `COPY . .` must never take credentials, build outputs or installed packages into an image layer.
        var ignored = File.ReadAllLines(Path.Combine(root, ".dockerignore")).Select(l => l.Trim()).ToHashSet();
        Assert.Superset(new HashSet<string> { "credentials/", "**/bin/", "**/obj/", ".git/", "**/node_modules/" }, ignored);
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
    public async Task A_seed_and_two_workers_configured_only_by_the_cpu_overlays_environment_bootstrap_answer_health_checks_and_train_a_run()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        var pods = Pods("cpu", Rendered("cpu"));
        var seedPod = pods.Single(p => p.Kind == "StatefulSet");
        var workerPod = pods.Single(p => p.Kind == "Deployment");
        var (seedPort, seedManagement, seedHttp) = (NodeProcesses.FreePort(), NodeProcesses.FreePort(), NodeProcesses.FreePort());

        // The manifest's environment with this machine's values. Only these settings change: addresses, fixed ports
        // (three pods share one machine), folders, and discovery: the Kubernetes API's answer (the seed pod's
        // management endpoint) given as a config list, which Akka.Discovery's config method serves to the same bootstrap.
        var replaced = new HashSet<string>();
        Dictionary<string, string> Local(Pod pod, string name, int port, int management, int? http = null)
        {
            var env = Environment(pod, f => f == "status.podIP" ? "127.0.0.1" : InCluster(pod, f));
            string? Replace(string key) => key switch
            {
                "GANCLUSTER_Node__Port" => port.ToString(),
                "GANCLUSTER_Node__ManagementPort" => management.ToString(),
                "GANCLUSTER_Node__HttpPort" => http!.Value.ToString(),
                "GANCLUSTER_Node__MetricsPort" => NodeProcesses.FreePort().ToString(),
                "GANCLUSTER_Node__DataPorts" => NodeProcesses.FreePort().ToString(),
                "GANCLUSTER_Node__Discovery" => "config",
                "GANCLUSTER_Node__StateDir" => Path.Combine(dir.Path, "data", "state"),
                "GANCLUSTER_Node__RunsRoot" => Path.Combine(dir.Path, "data", "runs"),
                "GANCLUSTER_Node__Credentials" => TestCredentials.Folder,                   // the Secret's mount
                "GANCLUSTER_Node__CpuThreads" => "1",                                      // two workers on this machine's cores
                "XDG_CACHE_HOME" or "GANCLUSTER_NATIVE_CACHE" => Path.Combine(dir.Path, name, "cache"),
                _ => null,
            };
            var local = new Dictionary<string, string>();
            foreach (var (key, value) in env)
            {
                var v = Replace(key);
                if (v is not null) replaced.Add(key);
                local[key] = v ?? value;
            }
            local["GANCLUSTER_Node__DiscoveryEndpoints"] = $"127.0.0.1:{seedManagement}";
            return local;
        }
        var seed = nodes.StartNode(Local(seedPod, "seed", seedPort, seedManagement, seedHttp), dir.Path, "k8s-seed");
        var workerManagement = new[] { NodeProcesses.FreePort(), NodeProcesses.FreePort() };
        var workers = workerManagement.Select((m, i) => nodes.StartNode(Local(workerPod, $"worker-{i}", NodeProcesses.FreePort(), m), dir.Path, $"k8s-worker-{i}")).ToList();
        Assert.Superset(new HashSet<string> { "GANCLUSTER_Node__Port", "GANCLUSTER_Node__ManagementPort", "GANCLUSTER_Node__HttpPort", "GANCLUSTER_Node__Discovery",
            "GANCLUSTER_Node__DataPorts", "GANCLUSTER_Node__StateDir", "GANCLUSTER_Node__RunsRoot", "GANCLUSTER_Node__Credentials" }, replaced);

        // The probes' view: every pod ready (seed: the coordinator answers; worker: registered).
        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        bool Answers(int port, string path)
        {
            try { return probe.GetAsync($"http://127.0.0.1:{port}{path}").Result.StatusCode == HttpStatusCode.OK; }
            catch (AggregateException) { return false; }
        }
        foreach (var (port, name) in workerManagement.Select((p, i) => (p, $"worker {i}")).Prepend((seedManagement, "seed")))
        {
            nodes.WaitFor(() => Answers(port, "/ready"), TimeSpan.FromMinutes(3), $"{name} ready (/ready on its management port)");
            Assert.True(Answers(port, "/alive"), $"{name}: /alive");
        }

        // What `kubectl port-forward svc/gancluster-seed 8080` reaches: the HTTP API, with the cluster's token and its pinned certificate.
        using var api = new HttpClient(new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, certificate, _, _) => TestCredentials.Cluster.IsClusterCertificate(certificate),
        }) { BaseAddress = new Uri($"https://127.0.0.1:{seedHttp}"), Timeout = Timeout.InfiniteTimeSpan };   // the event stream lasts the run
        api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TestCredentials.Cluster.HttpToken());
        using (var status = JsonDocument.Parse(await api.GetStringAsync("/api/status", new CancellationTokenSource(TimeSpan.FromMinutes(1)).Token)))
            Assert.Equal(2, status.RootElement.GetProperty("workers").GetInt32());

        // Submit and follow the run over the same API, as `gancluster submit --cluster https://127.0.0.1:8080 --wait` does.
        // The output is relative: under the seed's Node:RunsRoot (the data volume).
        const string spec = """
            { "name": "k8s", "dataset": { "kind": "ring8", "size": 4000 }, "model": { "kind": "mlp", "nz": 4, "ngf": 32, "ndf": 32 },
              "training": { "iterations": 300, "batchSize": 64, "seed": 5, "logEvery": 100 }, "checkpoint": { "every": 300 },
              "output": "out" }
            """;
        using var submitted = await api.PostAsync("/api/runs", new StringContent(spec, System.Text.Encoding.UTF8, "application/json"));
        var body = await submitted.Content.ReadAsStringAsync();
        Assert.True(submitted.StatusCode == HttpStatusCode.Accepted, $"{(int)submitted.StatusCode} {body}\n{nodes.AllLogs()}");
        string runId;
        using (var accepted = JsonDocument.Parse(body))
        {
            runId = accepted.RootElement.GetProperty("runId").GetString()!;
            Assert.Equal(2, accepted.RootElement.GetProperty("workers").GetInt32());
        }
        using var follow = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        using var events = await api.GetAsync($"/api/runs/{runId}/events", HttpCompletionOption.ResponseHeadersRead, follow.Token);
        Assert.Equal("text/event-stream", events.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await events.Content.ReadAsStreamAsync(follow.Token));
        string? eventName = null, ended = null;
        while (ended is null && await reader.ReadLineAsync(follow.Token) is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) eventName = line["event: ".Length..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal) && eventName == "ended") ended = line["data: ".Length..];
        }
        Assert.True(ended is not null, $"the event stream closed without an ended event\n{nodes.AllLogs()}");
        using var end = JsonDocument.Parse(ended);
        Assert.True(end.RootElement.GetProperty("outcome").GetString() == "Completed", $"{ended}\n{nodes.AllLogs()}");
        Assert.Contains("300 iterations on 2 worker(s)", end.RootElement.GetProperty("message").GetString());
        Assert.True(File.Exists(Path.Combine(dir.Path, "data", "runs", "out", "metrics.csv")), "the run's output on the seed's data volume");
        var checksum = end.RootElement.GetProperty("finalChecksum").GetString();
        Assert.Matches("^[0-9a-f]{64}$", checksum);
        Assert.All(workers, w => nodes.WaitForLog(w, $"final parameter checksum {checksum}"));
        Assert.All(workers, w => Assert.Matches(@"data plane 127\.0\.0\.1:\d+", nodes.Log(w)));   // the ring is reached at the pod IP
    }

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex VarRegex();

}
