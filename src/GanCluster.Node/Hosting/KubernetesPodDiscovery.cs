using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using Akka.Discovery;
using Akka.Event;

namespace GanCluster.Node.Hosting;

/// <summary>
/// Akka.Discovery method for Node:Discovery=kubernetes: lists the pods that a label selector selects through the
/// Kubernetes API (GET /api/v1/namespaces/NS/pods, with the pod's service account token, the API server checked
/// against the service account's CA) and returns each running pod's IP with its container port named as the lookup's
/// port name. It does what Akka.Discovery.KubernetesApi does; that package (1.5.73) was built against KubernetesClient
/// 17, which NuGet no longer serves, and its lookup fails on the served 19.0.2 with MissingMethodException.
/// The service account needs get and list on pods (cluster-config/kubernetes).
/// </summary>
public sealed class KubernetesPodDiscovery : ServiceDiscovery
{
    public const string ConfigPath = "akka.discovery.gancluster-kubernetes";
    const string ServiceAccount = "/var/run/secrets/kubernetes.io/serviceaccount";

    readonly ILoggingAdapter _log;
    readonly HttpClient _http;
    readonly Uri _api;
    readonly string _tokenPath, _namespace, _labelSelector;

    public KubernetesPodDiscovery(ExtendedActorSystem system) : this(system, system.Settings.Config.GetConfig(ConfigPath))
    {
    }

    public KubernetesPodDiscovery(ExtendedActorSystem system, Config config)
    {
        _log = Logging.GetLogger(system, typeof(KubernetesPodDiscovery));
        config = system.Settings.Config.GetConfig(ConfigPath);   // whatever section Akka.Discovery hands over
        var api = config.GetString("api-url", "");
        if (string.IsNullOrWhiteSpace(api))
        {
            // As every pod sees its API server.
            var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
            var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
            api = string.IsNullOrWhiteSpace(host) ? "https://kubernetes.default.svc" : $"https://{(host.Contains(':') ? $"[{host}]" : host)}:{port}";
        }
        _api = new Uri(api);
        _tokenPath = config.GetString("token-path", $"{ServiceAccount}/token");
        var caPath = config.GetString("ca-path", $"{ServiceAccount}/ca.crt");
        _namespace = config.GetString("namespace", "") is { Length: > 0 } ns ? ns : ReadOr(config.GetString("namespace-path", $"{ServiceAccount}/namespace"), "default");
        _labelSelector = config.GetString("label-selector", "");
        var handler = new SocketsHttpHandler();
        if (_api.Scheme == "https" && File.Exists(caPath))
        {
            // Trust the cluster's CA only, not the machine's roots.
            var ca = X509CertificateLoader.LoadCertificateFromFile(caPath);
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(certificate));
            };
        }
        _http = new HttpClient(handler);
    }

    static string ReadOr(string path, string fallback) => File.Exists(path) ? File.ReadAllText(path).Trim() : fallback;

    public override async Task<Resolved> Lookup(Lookup lookup, TimeSpan resolveTimeout)
    {
        var selector = _labelSelector.Replace("{0}", lookup.ServiceName, StringComparison.Ordinal);
        var uri = new Uri(_api, $"/api/v1/namespaces/{Uri.EscapeDataString(_namespace)}/pods?labelSelector={Uri.EscapeDataString(selector)}");
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        // The projected token is rotated: read it at each lookup.
        if (File.Exists(_tokenPath)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", (await File.ReadAllTextAsync(_tokenPath)).Trim());
        using var timeout = new CancellationTokenSource(resolveTimeout);
        using var response = await _http.SendAsync(request, timeout.Token);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"listing pods {selector} in {_namespace}: the Kubernetes API answered {(int)response.StatusCode} {response.ReasonPhrase} " +
                                                "(may the pod's service account get and list pods?)");
        using var json = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(timeout.Token), cancellationToken: timeout.Token);
        var targets = Targets(json.RootElement, lookup.PortName).ToList();
        if (targets.Count == 0) _log.Warning("no running pod with a port named {0} selected by {1} in namespace {2}", lookup.PortName ?? "(any)", selector, _namespace);
        return new Resolved(lookup.ServiceName, targets);
    }

    /// <summary>The running, not deleted pods of a PodList with an IP, at their container port named <paramref name="portName"/> (any port when null).</summary>
    public static IEnumerable<ResolvedTarget> Targets(JsonElement podList, string? portName)
    {
        if (!podList.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array) yield break;
        foreach (var pod in items.EnumerateArray())
        {
            if (pod.TryGetProperty("metadata", out var meta) && meta.TryGetProperty("deletionTimestamp", out var deleted) && deleted.ValueKind != JsonValueKind.Null) continue;
            if (!pod.TryGetProperty("status", out var status)) continue;
            if (!status.TryGetProperty("phase", out var phase) || phase.GetString() != "Running") continue;
            if (!status.TryGetProperty("podIP", out var ipText) || !IPAddress.TryParse(ipText.GetString(), out var ip)) continue;
            int? port = null;
            if (portName is not null)
            {
                port = ContainerPorts(pod).Where(p => p.Name == portName).Select(p => (int?)p.Port).FirstOrDefault();
                if (port is null) continue;
            }
            yield return new ResolvedTarget(ip.ToString(), port, ip);
        }
    }

    static IEnumerable<(string? Name, int Port)> ContainerPorts(JsonElement pod)
    {
        if (!pod.TryGetProperty("spec", out var spec) || !spec.TryGetProperty("containers", out var containers)) yield break;
        foreach (var container in containers.EnumerateArray())
        {
            if (!container.TryGetProperty("ports", out var ports) || ports.ValueKind != JsonValueKind.Array) continue;
            foreach (var p in ports.EnumerateArray())
                if (p.TryGetProperty("containerPort", out var number))
                    yield return (p.TryGetProperty("name", out var name) ? name.GetString() : null, number.GetInt32());
        }
    }
}
