using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using GanCluster.Actors.Security;
using GanCluster.Protocol;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The seed's HTTP API (docs/http-api.md) with a real seed (and a real worker) on loopback: who it lets in (the
/// cluster's certificate, its token, the login cookie) and whom it refuses (nobody, another cluster's certificate, a
/// wrong token or cookie), that no file outside a run folder leaves it, and the real CLI over it.
/// </summary>
[Collection("processes")]
public class HttpApiTests
{
    const string Spec = """
        { "name": "NAME", "dataset": { "kind": "ring8", "size": 4000 }, "model": { "kind": "mlp", "nz": 4, "ngf": 16, "ndf": 16 },
          "training": { "iterations": ITERATIONS, "batchSize": 32, "seed": 3, "logEvery": 50 }, "checkpoint": { "every": 100 }, "output": "NAME" }
        """;

    static string SpecOf(string name, int iterations) => Spec.Replace("NAME", name).Replace("ITERATIONS", iterations.ToString());

    /// <summary>A seed with Node:HttpPort (and <paramref name="workers"/> workers), its API answering.</summary>
    static (int Port, int Http, int Seed) StartSeed(NodeProcesses nodes, int workers)
    {
        var http = NodeProcesses.FreePort();
        nodes.ExtraArgs.Add($"--Node:HttpPort={http}");
        var port = NodeProcesses.FreePort();
        var seed = nodes.StartSeed(port);
        nodes.ExtraArgs.Clear();
        nodes.StartWorkers(workers, port);
        using var anonymous = Client(null);
        nodes.WaitFor(() => Answers(anonymous, $"https://127.0.0.1:{http}/"), TimeSpan.FromMinutes(1), "the HTTP API listening");
        if (workers > 0)
        {
            using var client = Client(TestCredentials.Cluster);
            nodes.WaitFor(() => Get<HttpApi.Status>(client, $"https://127.0.0.1:{http}/api/status").Workers == workers, TimeSpan.FromMinutes(2), $"{workers} worker(s) registered");
        }
        return (port, http, seed);
    }

    static bool Answers(HttpClient client, string url)
    {
        try { return client.GetAsync(url).Result.StatusCode == HttpStatusCode.OK; }
        catch (AggregateException) { return false; }
    }

    /// <summary>An HTTPS client that presents <paramref name="certificate"/>'s certificate (none when null) and pins the seed to the test cluster's.</summary>
    static HttpClient Client(ClusterCredentials? certificate)
    {
        var handler = new SocketsHttpHandler { UseCookies = false };
        if (certificate is not null)
        {
            handler.SslOptions.ClientCertificates = [certificate.Certificate];
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate.Certificate;
        }
        handler.SslOptions.RemoteCertificateValidationCallback = (_, server, _, _) => TestCredentials.Cluster.IsClusterCertificate(server);
        return new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(60) };
    }

    static T Get<T>(HttpClient client, string url)
    {
        using var response = client.GetAsync(url).Result;
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {url}: {(int)response.StatusCode} {response.Content.ReadAsStringAsync().Result}");
        return response.Content.ReadFromJsonAsync<T>(HttpApi.Json).Result!;
    }

    static HttpResponseMessage Send(HttpClient client, HttpMethod method, string url, string? bearer = null, string? cookie = null, string? body = null)
    {
        using var request = new HttpRequestMessage(method, url);
        if (bearer is not null) request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearer);
        if (cookie is not null) request.Headers.Add("Cookie", $"{HttpApi.TokenCookie}={cookie}");
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        return client.SendAsync(request).Result;
    }

    static HttpResponseMessage Fetch(HttpClient client, string url) => client.GetAsync(url).Result;
    static string Text(HttpResponseMessage response) => response.Content.ReadAsStringAsync().Result;
    static T Json<T>(HttpResponseMessage response) => response.Content.ReadFromJsonAsync<T>(HttpApi.Json).Result!;
    static byte[] Bytes(HttpResponseMessage response) => response.Content.ReadAsByteArrayAsync().Result;
    static T Finished<T>(Task<T> task) => task.GetAwaiter().GetResult();

    [Fact]
    public void Every_protected_route_refuses_strangers_with_401_lets_in_the_certificate_token_and_cookie_and_serves_no_file_outside_a_run()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = Path.Combine(dir.Path, "runs");
        // A run folder as a finished run leaves it, a secret next to it, and links that lead out of it.
        var run = Path.Combine(nodes.RunsRoot, "manual");
        Directory.CreateDirectory(Path.Combine(run, "samples"));
        Directory.CreateDirectory(Path.Combine(run, ".upload-00000002"));
        File.WriteAllText(Path.Combine(run, "spec.json"), SpecOf("manual", 10));
        var png = new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3 };
        File.WriteAllBytes(Path.Combine(run, "samples", "iter-00000002.png"), png);
        File.WriteAllText(Path.Combine(run, ".upload-00000002", "G.bin"), "staging");
        File.WriteAllText(Path.Combine(run, "metrics.csv"),
            "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped,fid,class_kl,confident,modes,high_quality\n" +
            "2,1.5,0.7,0.5,0.4,100.0,1.00,0,,,,,\n2,,,,,,1.10,,,,,3,0.25\n4,NaN,0.8,0.6,0.3,120.0,2.00,1,,,,,\n");
        File.WriteAllText(Path.Combine(nodes.RunsRoot, "secret.txt"), "not for the API");
        File.WriteAllText(dir.File("outside/secret.txt"), "not for the API either");
        File.CreateSymbolicLink(Path.Combine(run, "leak.txt"), Path.Combine(nodes.RunsRoot, "secret.txt"));
        Directory.CreateSymbolicLink(Path.Combine(run, "up"), Path.Combine(dir.Path, "outside"));

        var (_, http, seed) = StartSeed(nodes, workers: 0);
        var api = $"https://127.0.0.1:{http}";
        using var anonymous = Client(null);
        var foreignFolder = Path.Combine(dir.Path, "foreign");
        using var foreign = Client(TestCredentials.Foreign(foreignFolder));
        using var member = Client(TestCredentials.Cluster);
        var token = CliProcess.Run(["certs", "token"]).StdOut.Trim();
        Assert.Equal(TestCredentials.Cluster.HttpToken(), token);
        Assert.Matches("^[A-Za-z0-9_-]{43}$", token);   // base64url of 32 bytes, no padding
        const string wrongToken = "Zm9yZ2VkLXRva2VuLW9mLWEtc3RyYW5nZXItMDAwMDAwMDA";

        // The dashboard and the login are open: they hold no data.
        var page = Fetch(anonymous, $"{api}/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<html", Text(page));
        Assert.Equal(HttpStatusCode.OK, Fetch(anonymous, $"{api}/dashboard/index.html").StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, Fetch(anonymous, $"{api}/dashboard/nothing.js").StatusCode);

        (HttpMethod Method, string Path)[] routes =
        [
            (HttpMethod.Get, "/api/status"), (HttpMethod.Get, "/api/runs"), (HttpMethod.Post, "/api/runs"),
            (HttpMethod.Get, "/api/runs/manual-1/events"), (HttpMethod.Post, "/api/runs/manual-1/cancel"),
            (HttpMethod.Get, "/api/runs/manual/metrics"), (HttpMethod.Get, "/api/runs/manual/files"),
            (HttpMethod.Get, "/api/runs/manual/files/samples/iter-00000002.png"), (HttpMethod.Get, "/api/runs/manual/files/spec.json"),
        ];
        foreach (var (method, path) in routes)
        {
            var body = method == HttpMethod.Post ? SpecOf("intruder", 4) : null;
            foreach (var (who, response) in new[]
            {
                ("nobody", Send(anonymous, method, api + path, body: body)),
                ("another cluster's certificate", Send(foreign, method, api + path, body: body)),
                ("a wrong token", Send(anonymous, method, api + path, bearer: wrongToken, body: body)),
                ("a wrong cookie", Send(anonymous, method, api + path, cookie: wrongToken, body: body)),
                ("another cluster's certificate and a wrong token", Send(foreign, method, api + path, bearer: wrongToken, body: body)),
            })
            {
                Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{method} {path} with {who}: {(int)response.StatusCode}");
                Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
                Assert.Contains("authentication required", Json<HttpApi.ApiError>(response).Error);
            }
        }
        Assert.Equal(HttpStatusCode.Unauthorized, Send(anonymous, HttpMethod.Post, $"{api}/api/login", body: $$"""{"token":"{{wrongToken}}"}""").StatusCode);
        // Nothing was submitted by the strangers, and every refusal is logged without what was presented.
        Assert.False(Directory.Exists(Path.Combine(nodes.RunsRoot, "intruder")));
        var log = nodes.WaitForLog(seed, "http api: refused POST /api/login from 127.0.0.1: a wrong token at login");   // the last refusal
        Assert.Contains("http api: refused GET /api/status from 127.0.0.1: no client certificate, token or cookie", log);
        Assert.Contains("http api: refused POST /api/runs from 127.0.0.1: a client certificate that is not the cluster's (CN=GanCluster cluster foreign", log);
        Assert.Contains("http api: refused GET /api/runs from 127.0.0.1: a wrong bearer token", log);
        Assert.Contains("http api: refused GET /api/runs/manual/metrics from 127.0.0.1: a wrong gancluster_token cookie", log);
        Assert.Contains("http api: refused POST /api/login from 127.0.0.1: a wrong token at login", log);
        Assert.DoesNotContain(wrongToken, log);
        Assert.DoesNotContain(token, log);

        // The CLI with another cluster's credentials refuses the seed's certificate (its pin) before sending anything.
        var stranger = CliProcess.Run(["status", "--cluster", api, "--credentials", foreignFolder]);
        Assert.Equal(2, stranger.ExitCode);
        Assert.Contains($"could not reach the seed's HTTP API at {api}: the seed's certificate is not the one these credentials pin", stranger.StdErr);

        // The cluster's certificate.
        var status = Get<HttpApi.Status>(member, $"{api}/api/status");
        Assert.Equal((RunState.Idle, 0), (status.State, status.Workers));
        var files = Get<HttpApi.FilesListed>(member, $"{api}/api/runs/manual/files").Files;
        Assert.Equal(["metrics.csv", "samples/iter-00000002.png", "spec.json"], files.Select(f => f.Path));   // no links, nothing hidden
        Assert.Equal(["other", "sample", "other"], files.Select(f => f.Kind));
        Assert.Equal(png.Length, files[1].Size);
        var sample = Fetch(member, $"{api}/api/runs/manual/files/samples/iter-00000002.png");
        Assert.Equal("image/png", sample.Content.Headers.ContentType?.MediaType);
        Assert.Equal(png, Bytes(sample));

        // Its token.
        var runs = JsonSerializer.Deserialize<HttpApi.RunsListed>(Text(Send(anonymous, HttpMethod.Get, $"{api}/api/runs", bearer: token)), HttpApi.Json)!;
        var listed = Assert.Single(runs.Runs);
        Assert.Equal(("manual", "manual", RunFolderState.Stopped, 4L, 10L), (listed.Name, listed.Folder, listed.State, listed.Iteration, listed.Total));

        // The cookie of a login with the token: what the dashboard (and its EventSource) use.
        var login = Send(anonymous, HttpMethod.Post, $"{api}/api/login", body: $$"""{"token":"{{token}}"}""");
        Assert.Equal(HttpStatusCode.NoContent, login.StatusCode);
        var setCookie = login.Headers.GetValues("Set-Cookie").Single();
        Assert.StartsWith($"{HttpApi.TokenCookie}={token}", setCookie);
        foreach (var attribute in new[] { "httponly", "secure", "samesite=strict", "path=/" }) Assert.Contains(attribute, setCookie.ToLowerInvariant());
        var metrics = JsonSerializer.Deserialize<HttpApi.Metrics>(Text(Send(anonymous, HttpMethod.Get, $"{api}/api/runs/manual/metrics", cookie: token)), HttpApi.Json)!;
        Assert.Equal([2L, 2L, 4L], metrics.Rows.Select(r => r.Iteration));
        Assert.Equal((1.5, (double?)null, 3, 0.25), (metrics.Rows[0].LossD, metrics.Rows[1].LossD, metrics.Rows[1].Modes, metrics.Rows[1].HighQuality));
        Assert.Null(metrics.Rows[2].LossD);   // NaN in the file: null, not invalid JSON
        var logout = Send(anonymous, HttpMethod.Post, $"{api}/api/logout");
        Assert.Equal(HttpStatusCode.NoContent, logout.StatusCode);
        Assert.Contains("expires=", logout.Headers.GetValues("Set-Cookie").Single().ToLowerInvariant());

        // Authenticated, still nothing outside the run folder: climbing out (encoded, as a browser would not), absolute,
        // through a link, hidden staging folders; nor a run "name" that climbs.
        foreach (var path in new[] { "..%2Fsecret.txt", "%2Fetc%2Fpasswd", "%2e%2e%2Fsecret.txt", "samples%2F..%2F..%2Fsecret.txt", "leak.txt", "up/secret.txt",
                     "up%2Fsecret.txt", ".upload-00000002/G.bin", "samples", "samples%5C..%5C..%5Csecret.txt" })
        {
            var response = Fetch(member, $"{api}/api/runs/manual/files/{path}");
            Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"files/{path}: {(int)response.StatusCode} {Text(response)}");
        }
        foreach (var name in new[] { "..", "%2E%2E", "..%2F..%2Fetc", "%2Fetc", "nothing" })
            Assert.Equal(HttpStatusCode.NotFound, Fetch(member, $"{api}/api/runs/{name}/files").StatusCode);
        Assert.Contains("refused GET /api/runs/manual/files/", nodes.Log(seed));
    }

    [Fact]
    public void The_cli_submits_follows_downloads_cancels_and_lists_over_https_and_events_arrive_in_order()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = Path.Combine(dir.Path, "runs");
        var (port, http, _) = StartSeed(nodes, workers: 1);
        var api = $"https://127.0.0.1:{http}";
        using var member = Client(TestCredentials.Cluster);

        // Submit over the API and follow its events: state first, progress in order, notes, then ended, then the end of the stream.
        // Long enough (2000 iterations, a save every 100) that the stream opens while it trains.
        var submitted = Send(member, HttpMethod.Post, $"{api}/api/runs", body: SpecOf("events", 2000));
        Assert.True(submitted.StatusCode == HttpStatusCode.Accepted, Text(submitted));
        var ack = Json<HttpApi.Submitted>(submitted);
        Assert.Equal(1, ack.Workers);
        var busy = Send(member, HttpMethod.Post, $"{api}/api/runs", body: SpecOf("second", 300));
        Assert.Equal(HttpStatusCode.Conflict, busy.StatusCode);
        Assert.Contains("busy", Json<HttpApi.ApiError>(busy).Error);
        var events = ReadEvents(member, $"{api}/api/runs/{ack.RunId}/events");
        Assert.Equal(HttpApi.Events.State, events[0].Name);
        Assert.Equal(HttpApi.Events.Ended, events[^1].Name);
        Assert.Equal(1, events.Count(e => e.Name == HttpApi.Events.Ended));
        var progress = events.Where(e => e.Name == HttpApi.Events.Progress).Select(e => JsonSerializer.Deserialize<RunProtocol.ProgressReported>(e.Data, HttpApi.Json)!).ToList();
        Assert.NotEmpty(progress);
        // Every line from the first: the seed watched the run from its submit, the stream replays what came before it.
        Assert.Equal(Enumerable.Range(1, 40).Select(i => i * 50L), progress.Select(p => p.Iteration));
        Assert.All(progress, p => Assert.Equal((ack.RunId, 2000L), (p.RunId, p.Total)));
        Assert.Equal(2000, progress[^1].Iteration);
        Assert.Contains(events, e => e.Name == HttpApi.Events.Note && e.Data.Contains("outputs of iteration 2000 written"));
        var ended = JsonSerializer.Deserialize<RunProtocol.RunEnded>(events[^1].Data, HttpApi.Json)!;
        Assert.Equal((ack.RunId, RunOutcome.Completed), (ended.RunId, ended.Outcome));
        Assert.NotNull(ended.FinalChecksum);
        // A run that is over: the same events again, at once. One the coordinator never drove: 404.
        var again = ReadEvents(member, $"{api}/api/runs/{ack.RunId}/events");
        Assert.Equal(events, again);
        Assert.Equal(HttpStatusCode.NotFound, Fetch(member, $"{api}/api/runs/nothing-1/events").StatusCode);

        // Its metrics and files.
        var metrics = Get<HttpApi.Metrics>(member, $"{api}/api/runs/events/metrics");
        Assert.Equal(Enumerable.Range(1, 40).Select(i => i * 50L), metrics.Rows.Where(r => r.LossD is not null).Select(r => r.Iteration));
        Assert.Contains(metrics.Rows, r => r.Modes is not null && r.Iteration == 2000);
        var files = Get<HttpApi.FilesListed>(member, $"{api}/api/runs/events/files").Files;
        Assert.Contains(files, f => f.Path == "samples/iter-00002000.png" && f.Kind == "sample");
        Assert.Contains(files, f => f.Path == "checkpoints/iter-00002000/G.bin" && f.Kind == "checkpoint");

        // The real CLI: submit --wait over https prints what it prints over Akka.
        var specFile = Path.Combine(dir.Path, "cli.json");
        File.WriteAllText(specFile, SpecOf("cli", 300));
        var cli = CliProcess.Run(["submit", specFile, "--cluster", api, "--wait"], timeoutSeconds: 300);
        Assert.True(cli.ExitCode == 0, cli.StdOut + cli.StdErr + nodes.AllLogs());
        Assert.Matches(@"submitted run cli-\S+ \(300 iterations\) to 1 worker\(s\); outputs on the seed under ", cli.StdOut);
        foreach (var line in new[] { "[50/300] Loss_D: ", "[300/300] Loss_D: ", "(outputs of iteration 300 written under ", "completed: 300 iterations on 1 worker(s)" })
            Assert.Contains(line, cli.StdOut);
        Assert.True(cli.StdOut.IndexOf("[50/300]", StringComparison.Ordinal) < cli.StdOut.IndexOf("[300/300]", StringComparison.Ordinal));

        // download: the seed's files, byte for byte; only the kinds asked for.
        var target = Path.Combine(dir.Path, "downloaded");
        var download = CliProcess.Run(["download", "cli", "--cluster", api, "--out", target, "--what", "samples,checkpoints"], timeoutSeconds: 120);
        Assert.True(download.ExitCode == 0, download.StdOut + download.StdErr);
        var seedRun = Path.Combine(nodes.RunsRoot, "cli");
        var expected = Directory.EnumerateFiles(seedRun, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(seedRun, f))
            .Where(f => f.StartsWith("samples/", StringComparison.Ordinal) || f.StartsWith("checkpoints/", StringComparison.Ordinal)).Order().ToList();
        Assert.NotEmpty(expected);
        Assert.Equal(expected, Directory.EnumerateFiles(target, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(target, f)).Order().ToList());
        foreach (var f in expected) Assert.Equal(File.ReadAllBytes(Path.Combine(seedRun, f)), File.ReadAllBytes(Path.Combine(target, f)));
        Assert.Contains($"downloaded {expected.Count} file(s)", download.StdOut);
        var akka = CliProcess.Run(["download", "cli", "--cluster", $"127.0.0.1:{port}"]);
        Assert.Equal(2, akka.ExitCode);
        Assert.Contains("download needs --cluster https://HOST:PORT", akka.StdErr);

        // Contact lost while following (every connection through a proxy cut mid-run): the CLI says so, follows again, and
        // prints each line once although the new stream replays the run from its start.
        using (var proxy = new CuttingProxy(http))
        {
            var reconnectSpec = Path.Combine(dir.Path, "reconnect.json");
            File.WriteAllText(reconnectSpec, SpecOf("reconnect", 4000));
            var follow = Task.Run(() => CliProcess.Run(["submit", reconnectSpec, "--cluster", $"https://127.0.0.1:{proxy.Port}", "--wait", "--connect-timeout", "2"],
                timeoutSeconds: 600));
            nodes.WaitFor(() => Get<HttpApi.Status>(member, $"{api}/api/status") is { RunId: { } id, Iteration: >= 200 } && id.StartsWith("reconnect-", StringComparison.Ordinal),
                TimeSpan.FromMinutes(3), "the run past iteration 200");
            proxy.CutAll();
            var followed = Finished(follow);
            Assert.True(followed.ExitCode == 0, followed.StdOut + followed.StdErr + nodes.AllLogs());
            Assert.Contains($"(lost contact with the cluster; trying https://127.0.0.1:{proxy.Port} again)", followed.StdOut);
            Assert.Contains("completed: 4000 iterations on 1 worker(s)", followed.StdOut);
            Assert.DoesNotContain("went back to a checkpoint", followed.StdOut);
            foreach (var it in Enumerable.Range(1, 80).Select(i => i * 50))
                Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(followed.StdOut, $@"^\[{it}/4000\] ", System.Text.RegularExpressions.RegexOptions.Multiline));
        }

        // cancel over https: a long run (submitted over Akka, so the seed follows it only from the cancel on) stops at a
        // checkpoint; status and runs over https see it.
        var longSpec = Path.Combine(dir.Path, "long.json");
        File.WriteAllText(longSpec, SpecOf("long", 1_000_000));
        var started = CliProcess.Run(["submit", longSpec, "--cluster", $"127.0.0.1:{port}"], timeoutSeconds: 120);
        Assert.True(started.ExitCode == 0, started.StdOut + started.StdErr);
        var runId = started.StdOut.Split(' ')[2];
        nodes.WaitFor(() => CliProcess.Run(["status", "--cluster", api], timeoutSeconds: 60).StdOut is var s && s.Contains("state Running") && s.Contains($"run {runId}"),
            TimeSpan.FromMinutes(2), "the long run training");
        var status = CliProcess.Run(["status", "--cluster", api]);
        Assert.Contains("worker 127.0.0.1:", status.StdOut);
        Assert.Contains($": rank 0 of run {runId}", status.StdOut);
        var cancel = CliProcess.Run(["cancel", "--cluster", api, "--wait"], timeoutSeconds: 180);
        Assert.True(cancel.ExitCode == 0, cancel.StdOut + cancel.StdErr + nodes.AllLogs());
        Assert.Contains($"run {runId} cancelled: stopped by http (certificate) from 127.0.0.1", cancel.StdOut);
        var refused = CliProcess.Run(["cancel", runId, "--cluster", api]);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("has already ended", refused.StdErr);
        var runs = CliProcess.Run(["runs", "--dir", Path.Combine(dir.Path, "no-local-runs"), "--cluster", api]);
        Assert.True(runs.ExitCode == 0, runs.StdOut + runs.StdErr);
        Assert.Contains($"cluster {api} (the seed's runs root): 4 run(s)", runs.StdOut);
        foreach (var (name, state) in new[] { ("events", "completed"), ("cli", "completed"), ("reconnect", "completed"), ("long", "stopped") })
            Assert.Matches($@"\n  {name}\s+{state}\s", runs.StdOut);
    }

    /// <summary>A TCP proxy to a local port whose open connections can all be cut at once.</summary>
    sealed class CuttingProxy : IDisposable
    {
        readonly System.Net.Sockets.TcpListener _listener = new(IPAddress.Loopback, 0);
        readonly List<System.Net.Sockets.TcpClient> _open = [];
        readonly int _target;

        public CuttingProxy(int target)
        {
            _target = target;
            _listener.Start();
            _ = Accept();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        async Task Accept()
        {
            while (true)
            {
                System.Net.Sockets.TcpClient client;
                try { client = await _listener.AcceptTcpClientAsync(); }
                catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException) { return; }
                var server = new System.Net.Sockets.TcpClient();
                await server.ConnectAsync(IPAddress.Loopback, _target);
                lock (_open) _open.AddRange([client, server]);
                _ = Pump(client, server);
                _ = Pump(server, client);
            }
        }

        static async Task Pump(System.Net.Sockets.TcpClient from, System.Net.Sockets.TcpClient to)
        {
            try { await from.GetStream().CopyToAsync(to.GetStream()); }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException) { }
            from.Close();
            to.Close();
        }

        public void CutAll()
        {
            lock (_open)
            {
                foreach (var c in _open) c.Close();
                _open.Clear();
            }
        }

        public void Dispose()
        {
            _listener.Stop();
            CutAll();
        }
    }

    sealed record ServerEvent(string Name, string Data);

    /// <summary>Reads a run's event stream to its end (the server closes it after "ended").</summary>
    static List<ServerEvent> ReadEvents(HttpClient client, string url)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        using var response = client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).Result;
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{url}: {(int)response.StatusCode}");
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(response.Content.ReadAsStream());
        var events = new List<ServerEvent>();
        string? name = null, data = null;
        var clock = Stopwatch.StartNew();
        while (reader.ReadLine() is { } line)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromMinutes(4), "the event stream did not end");
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) data = line[6..];
            else if (line.Length == 0 && name is not null)
            {
                events.Add(new ServerEvent(name, data!));
                (name, data) = (null, null);
            }
        }
        return events;
    }

    [Fact]
    public void An_insecure_seed_serves_plain_http_on_loopback_only_and_workers_serve_none()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        var port = NodeProcesses.FreePort();
        var http = NodeProcesses.FreePort();
        string[] seed = ["--Node:Roles=seed", "--Node:Host=127.0.0.1", $"--Node:Port={port}", $"--Node:Seeds=127.0.0.1:{port}", "--Node:Insecure=true",
            $"--Node:StateDir={Path.Combine(dir.Path, "state")}", $"--Node:RunsRoot={dir.Path}", $"--Node:HttpPort={http}"];

        // Open to other machines without authentication: refused at start, naming the option.
        foreach (var (flags, option) in new[]
        {
            (new[] { "--Node:HttpHost=0.0.0.0" }, "Node:HttpHost must be a loopback address such as 127.0.0.1 with Node:Insecure=true (got \"0.0.0.0\")"),
            (["--Node:Host=0.0.0.0"], "Node:HttpHost must be a loopback address such as 127.0.0.1 with Node:Insecure=true (got \"0.0.0.0\", from Node:Host)"),
        })
        {
            var (code, output) = NodeProcesses.RunNodeToExit([.. seed, .. flags]);
            Assert.True(code == 2, $"exit {code}: {output}");
            Assert.Contains(option, output);
        }
        var (workerCode, workerOutput) = NodeProcesses.RunNodeToExit(["--Node:Roles=worker", "--Node:Insecure=true", $"--Node:Seeds=127.0.0.1:{port}", $"--Node:HttpPort={http}"]);
        Assert.True(workerCode == 2, $"exit {workerCode}: {workerOutput}");
        Assert.Contains("Node:HttpPort is served by seeds only", workerOutput);

        // On loopback: plain HTTP, no credentials asked, and the CLI's http:// path needs none.
        var started = nodes.TryStart("start-seed.sh", ["--host", "127.0.0.1", "--port", port.ToString(), "--log-dir", nodes.Logs, "--insecure",
            "--state-dir", Path.Combine(dir.Path, "state"), $"--Node:RunsRoot={dir.Path}", $"--Node:HttpPort={http}"]);
        Assert.True(started.ExitCode == 0, started.StdOut + started.StdErr);
        using var plain = new HttpClient();
        nodes.WaitFor(() => Answers(plain, $"http://127.0.0.1:{http}/"), TimeSpan.FromMinutes(1), "the HTTP API listening");
        Assert.Equal(HttpStatusCode.OK, Fetch(plain, $"http://127.0.0.1:{http}/api/status").StatusCode);
        var status = CliProcess.Run(["status", "--cluster", $"http://127.0.0.1:{http}"], new() { [ClusterCredentials.EnvironmentVariable] = Path.Combine(dir.Path, "none") });
        Assert.True(status.ExitCode == 0, status.StdOut + status.StdErr);
        Assert.Contains("state Idle; workers 0; run -", status.StdOut);
        Assert.Contains($"http api and dashboard: http://127.0.0.1:{http}/ (Node:Insecure: no authentication, loopback only)", nodes.Log(started.Pid!.Value));
    }
}
