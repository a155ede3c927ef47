using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Seed and worker nodes as real processes on 127.0.0.1, started with scripts/start-seed.sh and start-worker.sh as a
/// user starts them, each with its own log. Every process still running is killed (SIGKILL) on dispose.
/// </summary>
public sealed partial class NodeProcesses : IDisposable
{
    readonly List<int> _pids = [];
    readonly Dictionary<int, string> _logs = new();

    public NodeProcesses()
    {
        Root = FindRoot();
        Logs = Path.Combine(Path.GetTempPath(), "gancluster-nodes-" + Guid.NewGuid().ToString("N"));
        StateDir = Path.Combine(Logs, "state");
        RunsRoot = Path.Combine(Logs, "runs");
    }

    public string Root { get; }
    public string Logs { get; }
    public string StateDir { get; }
    /// <summary>The seeds' Node:RunsRoot: submitted outputs are relative folders under it (a test may point it at its own folder).</summary>
    public string RunsRoot { get; set; }
    /// <summary>Flags given to every node started with the scripts from now on.</summary>
    public List<string> ExtraArgs { get; } = [];

    /// <summary>A seed on <paramref name="port"/>; with <paramref name="seedPorts"/>, one of several seeds (all share <see cref="StateDir"/>).</summary>
    public int StartSeed(int port, params int[] seedPorts) =>
        Start("start-seed.sh", "--host", "127.0.0.1", "--port", port.ToString(), "--seeds", Seeds(seedPorts.Length > 0 ? seedPorts : [port]),
            "--log-dir", Logs, "--state-dir", StateDir, "--Node:ResumeGraceSeconds=5", $"--Node:RunsRoot={RunsRoot}");

    /// <summary>One libtorch thread per worker: several CPU workers share this machine's cores.</summary>
    public int StartWorker(params int[] seedPorts) =>
        Start("start-worker.sh", "--host", "127.0.0.1", "--seeds", Seeds(seedPorts), "--cpu-threads", "1", "--log-dir", Logs);

    /// <summary>A worker started with other flags than the cluster's (--insecure, --credentials DIR): a stranger to it.</summary>
    public int StartWorkerWith(int seedPort, params string[] flags) =>
        Start("start-worker.sh", ["--host", "127.0.0.1", "--seeds", Seeds([seedPort]), "--cpu-threads", "1", "--log-dir", Logs, .. flags]);

    /// <summary>A worker under start-worker.sh's supervisor (--restart-on-down); the pid is the supervisor's.</summary>
    public int StartSupervisedWorker(int seedPort) =>
        Start("start-worker.sh", "--host", "127.0.0.1", "--seeds", Seeds([seedPort]), "--cpu-threads", "1", "--log-dir", Logs, "--restart-on-down");

    /// <summary>The node process a supervisor runs now (none while it waits to restart it).</summary>
    public static int? ChildOf(int supervisor)
    {
        using var p = Process.Start(new ProcessStartInfo("pgrep", ["-P", supervisor.ToString(), "-f", "GanCluster.Node"]) { RedirectStandardOutput = true })!;
        var line = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        p.WaitForExit();
        return line is null ? null : int.Parse(line);
    }

    public static void Signal(string signal, int pid)
    {
        using var p = Process.Start("kill", [$"-{signal}", pid.ToString()]);
        p.WaitForExit();
    }

    public List<int> StartWorkers(int count, params int[] seedPorts) => Enumerable.Range(0, count).Select(_ => StartWorker(seedPorts)).ToList();

    /// <summary>One seed on a free port and <paramref name="workers"/> workers, waited for until all have registered.</summary>
    public (int Port, int Seed, List<int> Workers) StartCluster(int workers)
    {
        var port = FreePort();
        var seed = StartSeed(port);
        var started = StartWorkers(workers, port);
        WaitForWorkers(port, workers);
        return (port, seed, started);
    }

    public static string Seeds(IEnumerable<int> ports) => string.Join(",", ports.Select(p => $"127.0.0.1:{p}"));

    int Start(string script, params string[] args)
    {
        var r = TryStart(script, args);
        if (r.ExitCode != 0) throw new InvalidOperationException($"{script} failed ({r.ExitCode}): {r.StdOut}{r.StdErr}");
        return r.Pid ?? throw new InvalidOperationException($"{script} printed no pid or log: {r.StdOut}");
    }

    /// <summary>How a start script ended; <paramref name="Pid"/> is the node it left running (also when it did not join), if any.</summary>
    public sealed record StartResult(int ExitCode, string StdOut, string StdErr, int? Pid);

    /// <summary>Runs a start script as a user does, without failing when it does; a node it names is stopped on dispose.</summary>
    public StartResult TryStart(string script, params string[] args)
    {
        var psi = new ProcessStartInfo(Path.Combine(Root, "scripts", script)) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Root };
        foreach (var a in args.Concat(ExtraArgs)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        var output = stdout.Result + stderr;
        var pid = PidRegex().Match(output);
        var log = LogRegex().Match(output);
        int? id = null;
        if (pid.Success && log.Success)
        {
            id = int.Parse(pid.Groups[1].Value);
            _pids.Add(id.Value);
            _logs[id.Value] = log.Groups[1].Value;
        }
        return new StartResult(p.ExitCode, stdout.Result, stderr, id);
    }

    /// <summary>
    /// The node program (copied next to the tests) as a container runs it: configured only by <paramref name="environment"/>,
    /// no flags, output to a log of its own.
    /// </summary>
    public int StartNode(Dictionary<string, string> environment, string workingDirectory, string name)
    {
        Directory.CreateDirectory(Logs);
        var log = Path.Combine(Logs, $"{name}.log");
        var psi = new ProcessStartInfo("bash") { WorkingDirectory = workingDirectory };
        foreach (var a in new[] { "-c", "exec dotnet \"$0\" >\"$1\" 2>&1 </dev/null", NodeDll, log })
            psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;                                      // exec: the pid is the node's
        _pids.Add(p.Id);
        _logs[p.Id] = log;
        return p.Id;
    }

    /// <summary>The node program, copied next to the tests.</summary>
    public static string NodeDll => Path.Combine(AppContext.BaseDirectory, "GanCluster.Node.dll");

    /// <summary>The node program with <paramref name="args"/>, to its exit (one that is expected to refuse to start): its code and output.</summary>
    public static (int ExitCode, string Output) RunNodeToExit(IEnumerable<string> args, string? workingDirectory = null)
    {
        var r = CliProcess.RunProgram("dotnet", [NodeDll, .. args], workingDirectory: workingDirectory, timeoutSeconds: 120);
        return (r.ExitCode, r.StdOut + r.StdErr);
    }

    /// <summary>The log of the node with this pid.</summary>
    public string Log(int pid) => File.Exists(_logs[pid]) ? File.ReadAllText(_logs[pid]) : "";

    public string AllLogs() => string.Join("\n", _logs.Select(l => $"==> {l.Value} (pid {l.Key})\n{Log(l.Key)}"));

    public void Kill(int pid)
    {
        try { Process.GetProcessById(pid).Kill(); }   // SIGKILL
        catch (ArgumentException) { }
    }

    public void Terminate(int pid)
    {
        using var p = Process.Start("kill", ["-TERM", pid.ToString()]);
        p.WaitForExit();
    }

    public static bool Exited(int pid)
    {
        try { return Process.GetProcessById(pid).HasExited; }
        catch (ArgumentException) { return true; }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails with the logs after <paramref name="timeout"/>.</summary>
    public void WaitFor(Func<bool> condition, TimeSpan timeout, string what)
    {
        if (!TryWaitFor(condition, timeout)) throw new TimeoutException($"{what}: not within {timeout.TotalSeconds:F0} s\n{AllLogs()}");
    }

    /// <summary>Whether <paramref name="condition"/> came true within <paramref name="timeout"/> (for what may never come).</summary>
    public static bool TryWaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) return false;
            tick.WaitForNextTickAsync().AsTask().Wait();
        }
        return true;
    }

    /// <summary>
    /// The node's log once it holds <paramref name="text"/>: a node logs on background threads, so a line can still be on
    /// its way when what it reports (a reply, a status, a file) has been seen.
    /// </summary>
    public string WaitForLog(int pid, string text, TimeSpan? timeout = null)
    {
        WaitFor(() => Log(pid).Contains(text, StringComparison.Ordinal), timeout ?? TimeSpan.FromSeconds(30), $"\"{text}\" in the log of {pid}");
        return Log(pid);
    }

    public void WaitForWorkers(int seedPort, int count) =>
        WaitFor(() => CliProcess.Run(["status", "--cluster", $"127.0.0.1:{seedPort}", "--connect-timeout", "5"], timeoutSeconds: 60).StdOut.Contains($"workers {count}"),
            TimeSpan.FromMinutes(3), $"{count} workers registered");

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static string FindRoot()
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

    [GeneratedRegex(@"logs: ([^\s,)]+)")]
    private static partial Regex LogRegex();
}
