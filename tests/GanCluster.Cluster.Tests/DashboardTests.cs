using System.Text.Json;
using GanCluster.Training.Spec;
using GanCluster.Tests.Shared;
using Xunit.Abstractions;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// The seed's dashboard in a real headless Chromium, driven over the DevTools protocol, against a real seed (with the
/// cluster's credentials: HTTPS and the login box) and two workers on loopback, while a run trains: the page must show
/// the run advancing, its workers with device and rank, live loss curves, the newest sample and the mode scores.
/// </summary>
[Collection("processes")]
public class DashboardTests(ITestOutputHelper output)
{
    static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);

    [BrowserFact]
    public async Task The_dashboard_logs_in_with_the_token_and_shows_a_run_advancing_on_two_workers()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        // Long enough to watch (the test stops the nodes when it is done): a row every 10 iterations, samples every 100.
        var spec = Specs.Ring8(batch: 32, iterations: 200_000, output: "dashboard") with { Name = "dashboard" };
        spec = spec with { Training = spec.Training with { LogEvery = 10, SampleEvery = 100 } };
        var http = StartClusterAndSubmit(nodes, dir, spec);

        await using var browser = await DevToolsBrowser.StartAsync(1280, 800);
        var origin = $"https://127.0.0.1:{http}";
        try
        {
            await browser.NavigateAsync(origin + "/");

            // Not logged in: the API answers 401 and the page asks for the token; a wrong one is refused in the box.
            await browser.WaitForAsync("!document.getElementById('login').hidden", Patience, "the login box");
            await Type(browser, "#token", "not-the-token");
            await browser.EvaluateAsync("document.getElementById('login-button').click()");
            var refused = await browser.WaitForAsync("!document.getElementById('login-error').hidden && document.getElementById('login-error').textContent",
                Patience, "the wrong token refused");
            Assert.Contains("not this cluster's token", refused.GetString());
            await LogIn(browser);

            // The page reloads with the cookie: the cluster runs the submitted run, followed live over the event stream.
            await browser.WaitForAsync("document.readyState === 'complete' && document.getElementById('login').hidden && " +
                                       "document.getElementById('cluster-state').dataset.state === 'running' && " +
                                       "document.getElementById('stream').dataset.state === 'open'", Patience, "logged in, the run followed live");
            Assert.StartsWith("dashboard-", await Text(browser, "#run-id"));
            Assert.Equal("200000", await Text(browser, "#total"));

            // Both workers with their device and their rank in the run.
            var workers = await browser.WaitForAsync(
                "(() => { const rows = [...document.querySelectorAll('#workers tr[data-worker-id]')];" +
                " return rows.length === 2 && rows.map(r => [r.dataset.workerId, r.querySelector('.device').textContent, r.querySelector('.rank').textContent]); })()",
                Patience, "two workers listed");
            var listed = workers.EnumerateArray().Select(r => r.EnumerateArray().Select(c => c.GetString()!).ToArray()).ToList();
            Assert.All(listed, w => Assert.False(string.IsNullOrEmpty(w[0])));
            Assert.Equal(2, listed.Select(w => w[0]).Distinct().Count());
            Assert.Equal(new[] { "cpu", "cpu" }, listed.Select(w => w[1]));
            Assert.Equal(new[] { "0", "1" }, listed.Select(w => w[2]));

            // The run advances on the page: the iteration shown grows, and so does the loss chart.
            var first = (await browser.WaitForAsync("Number(document.getElementById('iteration').dataset.iteration)", Patience, "an iteration shown")).GetDouble();
            var points = (await browser.WaitForAsync("Number(document.getElementById('loss-chart').dataset.points)", Patience, "loss chart points")).GetDouble();
            var later = (await browser.WaitForAsync($"Number(document.getElementById('iteration').dataset.iteration) > {first} && Number(document.getElementById('iteration').dataset.iteration)",
                Patience, $"the iteration past {first}")).GetDouble();
            await browser.WaitForAsync($"Number(document.getElementById('loss-chart').dataset.points) > {Math.Max(points, 2)}", Patience, $"more than {Math.Max(points, 2)} loss points");
            Assert.InRange(later, first + 1, 200_000);
            Assert.Matches(@"^loss D -?\d", await Text(browser, "#loss-legend [data-series=lossD]"));
            Assert.Matches(@"^D\(x\) \d", await Text(browser, "#d-legend [data-series=dReal]"));

            // The newest sample (a scatter plot for 2-D data), loaded from the run's files, and its mode scores.
            var sample = await browser.WaitForAsync("document.getElementById('sample').naturalWidth > 0 && document.getElementById('sample').dataset.path",
                Patience, "a sample image");
            Assert.Matches(@"^samples/iter-\d+\.png$", sample.GetString());
            var modes = await browser.WaitForAsync("document.querySelector('#quality dd[data-score=modes]')?.textContent", Patience, "mode scores");
            Assert.InRange(int.Parse(modes.GetString()!), 0, 8);

            // The run in the list, running; the page fetched nothing but its own origin (it works offline).
            Assert.Equal("running", (await browser.EvaluateAsync("document.querySelector('#runs tr[data-run-name=dashboard]')?.dataset.state")).GetString());
            Assert.All(browser.Requests.Where(u => !u.StartsWith("data:", StringComparison.Ordinal)), u => Assert.StartsWith(origin + "/", u));
            Assert.DoesNotContain(browser.Log, l => l.StartsWith("uncaught", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is not Xunit.Sdk.XunitException)
        {
            throw new Xunit.Sdk.XunitException($"{e}\npage log:\n{string.Join('\n', browser.Log)}\n{nodes.AllLogs()}");
        }
        finally
        {
            // Kept as a test artifact, also when the test fails (what the page showed then).
            var shot = Path.Combine(AppContext.BaseDirectory, "TestResults", "dashboard-screenshot.png");
            try
            {
                await browser.ScreenshotAsync(shot);
                output.WriteLine($"dashboard screenshot: {shot}");
                Console.WriteLine($"dashboard screenshot: {shot}");
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException)
            {
                output.WriteLine($"no dashboard screenshot: {e.Message}");
            }
        }
    }

    /// <summary>
    /// Makes the README's picture (docs/images/dashboard.png) from a real run: an MNIST DCGAN on the same cluster, shot once
    /// it is past <c>GANCLUSTER_DASHBOARD_AFTER</c> iterations (700) with samples shown. Runs only when
    /// <c>GANCLUSTER_DASHBOARD_PICTURE</c> names the PNG to write (scripts/dashboard-screenshot.sh sets it).
    /// </summary>
    [DashboardPictureFact]
    public async Task Readme_picture_of_an_mnist_run()
    {
        var picture = Path.GetFullPath(Environment.GetEnvironmentVariable(DashboardPictureFactAttribute.Variable)!);
        var data = Environment.GetEnvironmentVariable("GANCLUSTER_DASHBOARD_MNIST") ?? Path.Combine(NodeProcesses.FindRoot(), "..", "shared", "data", "mnist-sample");
        var after = int.Parse(Environment.GetEnvironmentVariable("GANCLUSTER_DASHBOARD_AFTER") ?? "700", System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(File.Exists(Path.Combine(data, "images-idx3-ubyte.gz")), $"no MNIST files in {data}: set GANCLUSTER_DASHBOARD_MNIST");

        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        // examples/mnist-dcgan-watch.json's settings, run longer (stopped with the nodes) so that it is live in the picture.
        var spec = RunSpecValidator.Parse(File.ReadAllText(Path.Combine(nodes.Root, "examples", "mnist-dcgan-watch.json")), "mnist-dcgan-watch.json", checkPaths: false);
        spec = spec with
        {
            Dataset = spec.Dataset with { Path = Path.GetFullPath(data) },
            Training = spec.Training with { Iterations = 20_000 },
            Output = "mnist-dcgan-watch",
        };
        var http = StartClusterAndSubmit(nodes, dir, spec);

        await using var browser = await DevToolsBrowser.StartAsync(1280, 800);
        await browser.NavigateAsync($"https://127.0.0.1:{http}/");
        await browser.WaitForAsync("!document.getElementById('login').hidden", Patience, "the login box");
        await LogIn(browser);
        // The newest sample shown is of the last save at or before that iteration (samples/iter-00000700.png: names sort by iteration).
        var lastSave = after / spec.Training.SampleEvery * spec.Training.SampleEvery;
        await browser.WaitForAsync($"Number(document.getElementById('iteration').dataset.iteration) >= {after} && " +
                                   $"document.getElementById('sample').naturalWidth > 0 && document.getElementById('sample').dataset.path >= 'samples/iter-{lastSave:D8}' && " +
                                   "Number(document.getElementById('loss-chart').dataset.points) > 2",
            TimeSpan.FromMinutes(10), $"iteration {after} with the samples of {lastSave} and the curves");
        await browser.ScreenshotAsync(picture);
        output.WriteLine($"wrote {picture}");
        Console.WriteLine($"wrote {picture}");
    }

    /// <summary>
    /// A seed with the test credentials and the dashboard on a free port, two workers, and <paramref name="spec"/>
    /// submitted; returns the dashboard's port.
    /// </summary>
    static int StartClusterAndSubmit(NodeProcesses nodes, TempFolder dir, RunSpec spec)
    {
        nodes.RunsRoot = dir.Path;
        var port = NodeProcesses.FreePort();
        var http = NodeProcesses.FreePort();
        var seed = nodes.TryStart("start-seed.sh", "--host", "127.0.0.1", "--port", port.ToString(), "--log-dir", nodes.Logs, "--state-dir", nodes.StateDir,
            $"--Node:RunsRoot={dir.Path}", $"--Node:HttpPort={http}");
        Assert.True(seed.ExitCode == 0, seed.StdOut + seed.StdErr);
        nodes.StartWorkers(2, port);
        nodes.WaitForWorkers(port, 2);
        var specFile = Path.Combine(dir.Path, $"{spec.Name}.json");   // not spec.json: the runs root would list itself as a run
        File.WriteAllText(specFile, spec.ToJson());
        var submit = CliProcess.Run(["submit", specFile, "--cluster", $"127.0.0.1:{port}"], timeoutSeconds: 120);
        Assert.True(submit.ExitCode == 0, $"{submit.StdOut}{submit.StdErr}\n{nodes.AllLogs()}");
        return http;
    }

    /// <summary>Types the cluster's token (as <c>gancluster certs token</c> prints it) into the login box and logs in.</summary>
    static async Task LogIn(DevToolsBrowser browser)
    {
        await Type(browser, "#token", Token());
        await browser.EvaluateAsync("document.getElementById('login-button').click()");
    }

    static string Token()
    {
        var token = CliProcess.Run(["certs", "token"], timeoutSeconds: 60);
        Assert.True(token.ExitCode == 0, token.StdOut + token.StdErr);
        return token.StdOut.Trim();
    }

    /// <summary>Focuses the field, clears it, and types <paramref name="text"/> as a keyboard would.</summary>
    static async Task Type(DevToolsBrowser browser, string selector, string text)
    {
        await browser.EvaluateAsync($"(() => {{ const e = document.querySelector({JsonSerializer.Serialize(selector)}); e.value = ''; e.focus(); }})()");
        await browser.InsertTextAsync(text);
    }

    static async Task<string> Text(DevToolsBrowser browser, string selector) =>
        (await browser.EvaluateAsync($"document.querySelector({JsonSerializer.Serialize(selector)})?.textContent ?? ''")).GetString()!;
}

/// <summary>The README picture's "test": skipped unless GANCLUSTER_DASHBOARD_PICTURE names the PNG to write.</summary>
public sealed class DashboardPictureFactAttribute : FactAttribute
{
    public const string Variable = "GANCLUSTER_DASHBOARD_PICTURE";

    public DashboardPictureFactAttribute()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Variable)))
            Skip = $"makes docs/images/dashboard.png when {Variable} names the file (scripts/dashboard-screenshot.sh)";
    }
}
