using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// A real cluster on 127.0.0.1: one seed and two CPU workers started with scripts/start-seed.sh and start-worker.sh,
/// as a user starts them. Stopped (SIGKILL) when the tests of the class are done.
/// </summary>
public sealed partial class LiveCluster : IDisposable
{
    readonly List<int> _pids = [];

    public LiveCluster()
    {
        Root = FindRoot();
        Logs = Path.Combine(Path.GetTempPath(), "gancluster-live-" + Guid.NewGuid().ToString("N"));
        Port = FreePort();
        Start("start-seed.sh", "--host", "127.0.0.1", "--port", Port.ToString(), "--log-dir", Logs);
        for (var i = 0; i < 2; i++)
            Start("start-worker.sh", "--host", "127.0.0.1", "--seeds", $"127.0.0.1:{Port}", "--cpu-threads", "1", "--log-dir", Logs);

        // Wait for the condition (both workers registered), not for a fixed time.
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (true)
        {
            var status = CliProcess.Run(["status", "--cluster", Address, "--connect-timeout", "5"], timeoutSeconds: 60);
            if (status.StdOut.Contains("workers 2")) break;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"the cluster did not register 2 workers in 3 minutes: {status.StdOut}{status.StdErr}\n{AllLogs()}");
        }
    }

    public string Root { get; }
    public string Logs { get; }
    public int Port { get; }
    public string Address => $"127.0.0.1:{Port}";

    void Start(string script, params string[] args)
    {
        var psi = new ProcessStartInfo(Path.Combine(Root, "scripts", script)) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Root };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEnd();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{script} failed ({p.ExitCode}): {stdout}{stderr}");
        var m = PidRegex().Match(stdout);
        if (!m.Success) throw new InvalidOperationException($"{script} printed no pid: {stdout}");
        _pids.Add(int.Parse(m.Groups[1].Value));
        Assert.Contains("logs: ", stdout);
    }

    public string AllLogs() => string.Join("\n", Directory.GetFiles(Logs, "*.log").Select(f => $"==> {f}\n{File.ReadAllText(f)}"));

    public IEnumerable<string> WorkerLogs() => Directory.GetFiles(Logs, "worker-*.log").Select(File.ReadAllText);

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "GanCluster.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("GanCluster.sln not found above " + AppContext.BaseDirectory);
    }

    public void Dispose()
    {
        foreach (var pid in _pids)
        {
            try { Process.GetProcessById(pid).Kill(entireProcessTree: true); }
            catch (ArgumentException) { }          // already gone
            catch (InvalidOperationException) { }
        }
        try { Directory.Delete(Logs, true); } catch (IOException) { }
    }

    [GeneratedRegex(@"pid (\d+)")]
    private static partial Regex PidRegex();
}
