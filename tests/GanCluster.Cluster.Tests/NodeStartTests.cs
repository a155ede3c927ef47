using GanCluster.Node;
using GanCluster.Tests.Shared;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Starting nodes as a user does: the scripts return once the node has joined, and --data-port pins the workers' ring
/// listeners (for firewalls), with real seed and worker processes on loopback and a run whose ring goes through them.
/// </summary>
[Collection("processes")]
public class NodeStartTests
{
    [Fact]
    public void Data_ports_are_pinned_a_taken_one_stops_the_node_and_a_run_trains_through_them()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var port = NodeProcesses.FreePort();
        var seed = nodes.TryStart("start-seed.sh", "--host", "127.0.0.1", "--port", port.ToString(), "--log-dir", nodes.Logs, "--state-dir", nodes.StateDir,
            $"--Node:RunsRoot={dir.Path}");
        Assert.True(seed.ExitCode == 0, seed.StdOut + seed.StdErr);
        Assert.Contains("; joined", seed.StdOut);
        nodes.WaitForLog(seed.Pid!.Value, $"joined the cluster as akka.ssl.tcp://gancluster@127.0.0.1:{port}");

        var dataPorts = new[] { NodeProcesses.FreePort(), NodeProcesses.FreePort() };
        Assert.NotEqual(dataPorts[0], dataPorts[1]);
        // The second logs errors only: the script still knows when it has joined (from Node:ReadyFile, not the log).
        string[][] logging = [[], ["--Logging:LogLevel:Default=Error", "--Logging:LogLevel:Akka=Error", "--Logging:LogLevel:GanCluster=Error"]];
        var workers = dataPorts.Zip(logging).Select(w => nodes.TryStart("start-worker.sh", ["--host", "127.0.0.1", "--seeds", $"127.0.0.1:{port}", "--cpu-threads", "1",
            "--log-dir", nodes.Logs, "--data-port", w.First.ToString(), .. w.Second])).ToList();
        foreach (var w in workers)
        {
            Assert.True(w.ExitCode == 0, w.StdOut + w.StdErr);
            Assert.Contains("; joined", w.StdOut);   // returned only once the node is a member
        }
        Assert.Contains($"data plane 127.0.0.1:{dataPorts[0]}", nodes.Log(workers[0].Pid!.Value));
        Assert.DoesNotContain("info", nodes.Log(workers[1].Pid!.Value));

        // A port another worker holds: the node refuses to start, naming the option.
        var taken = nodes.TryStart("start-worker.sh", "--host", "127.0.0.1", "--seeds", $"127.0.0.1:{port}", "--cpu-threads", "1",
            "--log-dir", nodes.Logs, "--data-port", dataPorts[0].ToString());
        Assert.Equal(2, taken.ExitCode);
        Assert.Contains($"error: Node:DataPorts: port {dataPorts[0]} on 127.0.0.1 cannot be listened on (AddressAlreadyInUse", taken.StdErr);
        var bad = nodes.TryStart("start-worker.sh", "--host", "127.0.0.1", "--seeds", $"127.0.0.1:{port}", "--log-dir", nodes.Logs, "--data-port", "70000");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("Node:DataPorts must be empty (any free port), a port N or a range first-last within 1-65535 (got \"70000\")", bad.StdErr);

        // A two-worker run: its ring connects through the pinned listeners.
        nodes.WaitForWorkers(port, 2);
        var spec = Path.Combine(dir.Path, "pinned.json");
        File.WriteAllText(spec, Specs.Ring8(batch: 32, iterations: 40, output: "pinned").ToJson());
        var run = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 300);
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("on 2 worker(s)", run.StdOut);
        var seedLog = nodes.Log(seed.Pid!.Value);
        foreach (var p in dataPorts) Assert.Contains($"data plane 127.0.0.1:{p})", seedLog);

        // The seed's runs, as the client lists them (with an empty local folder).
        var runs = CliProcess.Run(["runs", "--dir", Path.Combine(dir.Path, "none"), "--cluster", $"127.0.0.1:{port}"], timeoutSeconds: 60);
        Assert.True(runs.ExitCode == 0, runs.StdOut + runs.StdErr);
        Assert.Contains("local (", runs.StdOut);
        Assert.Contains($"cluster 127.0.0.1:{port} (the seed's runs root): 1 run(s)", runs.StdOut);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(runs.StdOut, @"\n  eq +completed +40/40 "), runs.StdOut);
        Assert.Contains(Path.Combine(dir.Path, "pinned"), runs.StdOut);
    }

    [Fact]
    public void Data_ports_parse_as_a_port_or_a_range_with_one_port_per_device()
    {
        Assert.True(NodeOptions.TryParseDataPorts("", out var any) && any is null);
        Assert.True(NodeOptions.TryParseDataPorts("5000-5003", out var range) && range == (5000, 4));
        foreach (var bad in new[] { "0", "5003-5000", "5000-", "x", "65536", "-1" }) Assert.False(NodeOptions.TryParseDataPorts(bad, out _), bad);
        var options = new NodeOptions { DataPorts = "5000-5001", Devices = "cuda:0,cuda:1,cuda:2" };
        Assert.Equal(5001, options.DataPortOf(1));
        Assert.Equal("Node:DataPorts 5000-5001 gives 2 port(s) for 3 worker devices (cuda:0,cuda:1,cuda:2): give a range such as 5000-5002", options.DataPortsProblem(3));
        Assert.Null(options.DataPortsProblem(2));
        Assert.Equal(0, new NodeOptions().DataPortOf(0));
    }
}
