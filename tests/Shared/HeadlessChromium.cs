
namespace GanCluster.Tests.Shared;

/// <summary>
/// Debian's <c>chromium</c> in headless mode: screenshots and the DOM after parsing of a local page (the report), with
/// every host name resolving to nothing; <see cref="DevToolsBrowser"/> drives it over the DevTools protocol (the dashboard).
/// </summary>
public static class HeadlessChromium
{
    public const string SkipVariable = "GANCLUSTER_SKIP_BROWSER_TESTS";

    /// <summary>Set by .ci/run, which installs chromium: a missing browser fails the browser tests instead of skipping them.</summary>
    public const string RequireVariable = "GANCLUSTER_REQUIRE_BROWSER";

    /// <summary>
    /// Flags of every headless run. Root needs --no-sandbox; the rest keeps the browser quiet and off the network: host
    /// names resolve to nothing but 127.0.0.1, where the pages under test are served (or local files).
    /// </summary>
    public static readonly string[] Flags =
    [
        "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-quic",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ];

    /// <summary>The browser on PATH, or null.</summary>
    public static string? Find() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .SelectMany(dir => new[] { "chromium", "chromium-browser" }.Select(name => Path.Combine(dir, name)))
            .FirstOrDefault(File.Exists);

    /// <summary>The browser's path; a failure saying how to install it when there is none.</summary>
    public static string Require()
    {
        var path = Find();
        return path ?? throw new Xunit.Sdk.XunitException(
            "headless Chromium is needed for the browser tests (report page, dashboard) and is not installed: `apt-get install -y chromium` " +
            $"(Debian 12; .ci/run installs it when missing), or set {SkipVariable}=1 to skip the browser tests.");
    }

    /// <summary>Renders <paramref name="page"/> in a <paramref name="width"/>×<paramref name="height"/> window and writes a PNG of it.</summary>
    public static void Screenshot(string page, string png, int width, int height)
    {
        if (File.Exists(png)) File.Delete(png);
        Run([$"--screenshot={png}", $"--window-size={width},{height}", new Uri(page).AbsoluteUri]);
        Assert.True(File.Exists(png), $"chromium wrote no screenshot to {png}");
    }

    /// <summary>The page's DOM as Chromium serializes it after parsing and layout.</summary>
    public static string DumpDom(string page) => Run(["--dump-dom", new Uri(page).AbsoluteUri]);

    static string Run(IEnumerable<string> args)
    {
        var exe = Require();
        var profile = Path.Combine(Path.GetTempPath(), "gancluster-chromium-" + Guid.NewGuid().ToString("N"));
        try
        {
            var r = CliProcess.RunProgram(exe, Flags.Append($"--user-data-dir={profile}").Concat(args), timeoutSeconds: 120);
            Assert.True(r.ExitCode == 0, $"chromium exited with {r.ExitCode}: {r.StdErr}");
            return r.StdOut;
        }
        finally
        {
            try { Directory.Delete(profile, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}

/// <summary>
/// A test that runs headless Chromium: skipped when <c>GANCLUSTER_SKIP_BROWSER_TESTS=1</c>, or when chromium is not
/// installed on a developer's machine (the README's test command must pass on a fresh one; the skip says how to
/// install it). Under .ci/run (<c>GANCLUSTER_REQUIRE_BROWSER=1</c>) a missing browser is a failure.
/// </summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(HeadlessChromium.SkipVariable) == "1")
            Skip = $"{HeadlessChromium.SkipVariable}=1: browser tests skipped";
        else if (HeadlessChromium.Find() is null && Environment.GetEnvironmentVariable(HeadlessChromium.RequireVariable) != "1")
            Skip = "chromium is not installed: `apt-get install -y chromium` runs the browser tests of the report page and the dashboard (.ci/run installs it and requires it)";
    }
}
