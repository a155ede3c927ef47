using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using GanCluster.Training.Data;
using GanCluster.Training.Core;

namespace GanCluster.Cluster.Tests;

/// <summary>One seed and two workers as real processes on 127.0.0.1, driven through the CLI.</summary>
[Collection("processes")]
public partial class RealProcessTests(LiveCluster cluster) : IClassFixture<LiveCluster>
{
    [Fact]
    public void A_submitted_ring8_run_trains_to_quality_with_identical_replicas()
    {
        using var output = new TempFolder();
        var spec = Path.Combine(output.Path, "ring8.json");
        // The example spec (the README's ring8 run), writing into a fresh folder under the seed's runs root.
        var name = "ring8-" + Guid.NewGuid().ToString("N")[..8];
        var json = File.ReadAllText(Path.Combine(cluster.Root, "examples", "ring8.json"))
            .Replace("\"runs/ring8\"", $"\"{name}\"").Replace("\"logEvery\": 500", "\"logEvery\": 1000");
        File.WriteAllText(spec, json);

        var run = CliProcess.Run(["submit", spec, "--cluster", cluster.Address, "--wait"], timeoutSeconds: 600);
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{cluster.AllLogs()}");
        Assert.Contains("to 2 worker(s)", run.StdOut);
        Assert.Contains("[1000/6000] Loss_D:", run.StdOut);
        Assert.Contains("[6000/6000] Loss_D:", run.StdOut);
        var checksum = ChecksumRegex().Match(run.StdOut).Groups[1].Value;
        Assert.Equal(64, checksum.Length);

        // Same outputs as a local run, on the seed's disk.
        var outDir = Path.Combine(cluster.Runs, name);
        // Header + 6 interval rows (loss_d filled); the seed adds a mode-quality row per published sample set.
        Assert.Equal(7, File.ReadAllLines(Path.Combine(outDir, "metrics.csv")).Count(l => l.StartsWith("iteration,") || l.Split(',')[1].Length > 0));
        Assert.True(Directory.Exists(Path.Combine(outDir, "checkpoints", "iter-00006000")));
        Assert.Null(GanCluster.Training.Output.CheckpointStore.Verify(Path.Combine(outDir, "checkpoints", "iter-00006000")));
        var csv = File.ReadAllLines(Path.Combine(outDir, "samples", "iter-00006000.csv"));
        var xy = csv.Skip(1).SelectMany(l => l.Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture))).ToArray();
        var q = ModeQuality.Evaluate(xy, SyntheticDatasets.Ring8Modes, SyntheticDatasets.Ring8Std);
        Assert.Equal(2500, q.Samples);
        Assert.True(q.ModesCovered >= 6 && q.HighQualityFraction >= 0.80, q.ToString());
        Assert.Contains($"final samples: {q}", run.StdOut);                       // the seed rates them as a local run does

        // Every worker logs the same final parameter checksum.
        Assert.Equal(2, cluster.Workers.Count);
        Assert.All(cluster.Workers, w => Assert.Matches(@"rank \d+ final parameter checksum " + checksum, cluster.WaitForLog(w, $"final parameter checksum {checksum}")));
    }

    [Fact]
    public void Submit_takes_iterations_and_output_as_train_does()
    {
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "ring8.json");
        File.WriteAllText(spec, File.ReadAllText(Path.Combine(cluster.Root, "examples", "ring8.json")).Replace("\"logEvery\": 500", "\"logEvery\": 100"));
        var name = "override-" + Guid.NewGuid().ToString("N")[..8];

        // An override gets the file's checks, locally, before anything is sent.
        var bad = CliProcess.Run(["submit", spec, "--cluster", cluster.Address, "--iterations", "0"], timeoutSeconds: 60);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("training.iterations: must be at least 1 (got 0)", bad.StdErr);
        var outside = CliProcess.Run(["submit", spec, "--cluster", cluster.Address, "--output", "../elsewhere"], timeoutSeconds: 60);
        Assert.Equal(2, outside.ExitCode);
        Assert.Contains("output: must stay under the seed's runs root", outside.StdErr);

        var run = CliProcess.Run(["submit", spec, "--cluster", cluster.Address, "--wait", "--iterations", "200", "--output", name], timeoutSeconds: 300);
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{cluster.AllLogs()}");
        Assert.Contains("(200 iterations)", run.StdOut);
        Assert.Contains("[200/200] Loss_D:", run.StdOut);
        Assert.True(Directory.Exists(Path.Combine(cluster.Runs, name, "checkpoints", "iter-00000200")));
    }

    [Fact]
    public void A_followed_run_draws_a_live_line_on_a_terminal_and_the_seed_writes_tensorboard_events_with_the_all_reduce_time()
    {
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "ring8.json");
        File.WriteAllText(spec, File.ReadAllText(Path.Combine(cluster.Root, "examples", "ring8.json")).Replace("\"logEvery\": 500", "\"logEvery\": 50"));
        var name = "tensorboard-" + Guid.NewGuid().ToString("N")[..8];

        using var pty = new Pty(["submit", spec, "--cluster", cluster.Address, "--wait", "--iterations", "200", "--output", name]);
        Assert.True(pty.WaitForExit(TimeSpan.FromMinutes(5)) == 0, $"{pty.Output}\n{cluster.AllLogs()}");
        var text = Pty.Plain(pty.Output);
        Assert.Contains("[200/200] Loss_D:", text);
        Assert.Matches(@"iteration (50|100|150)/200 \(\d+%\)  [\d,]+ img/s  ETA \d+:\d\d  Loss_D", text);   // live, mid-run, with an ETA

        // On the seed: one scalar per metrics.csv column at each row's iteration, the all-reduce time, the samples.
        var outDir = Path.Combine(cluster.Runs, name);
        var points = TfEvents.ReadFolder(GanCluster.Training.Output.TensorBoardLog.PathOf(outDir));
        // Interval rows (a quality row, the seed's mode rating of a sample save, has no losses).
        var rows = File.ReadAllLines(Path.Combine(outDir, "metrics.csv")).Skip(1).Select(l => l.Split(',')).Where(r => r[1].Length > 0).ToList();
        Assert.Equal([50L, 100, 150, 200], rows.Select(r => long.Parse(r[0], CultureInfo.InvariantCulture)));
        var lossD = points.Where(p => p.Tag == "loss/d").ToList();
        Assert.Equal(rows.Select(r => long.Parse(r[0], CultureInfo.InvariantCulture)), lossD.Select(p => p.Step));
        Assert.Equal(rows.Select(r => double.Parse(r[1], CultureInfo.InvariantCulture)), lossD.Select(p => (double)p.Value!.Value), new ToleranceComparer(1e-5));
        var allReduce = points.Where(p => p.Tag == GanCluster.Training.Output.TensorBoardLog.AllReduceTag).ToList();
        Assert.Equal([50L, 100, 150, 200], allReduce.Select(p => p.Step));
        Assert.All(allReduce, p => Assert.InRange(p.Value!.Value, 1e-4f, 10_000f));   // two CPU workers on one machine: some time, never none
        var image = Assert.Single(points, p => p.Tag == GanCluster.Training.Output.TensorBoardLog.SamplesTag);
        Assert.Equal(200, image.Step);
        Assert.True(TfEvents.IsPng(image.Image!.Encoded));
    }

    sealed class ToleranceComparer(double relative) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= relative * Math.Max(1, Math.Abs(a));
        public int GetHashCode(double value) => 0;
    }

    [Fact]
    public void An_invalid_spec_is_refused_with_every_reason_and_the_cluster_stays_up()
    {
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "bad.json");
        File.WriteAllText(spec, """{"name": "bad", "model": {"kind": "gan"}, "training": {"k": 0, "lrD": -1}}""");
        var run = CliProcess.Run(["submit", spec, "--cluster", cluster.Address], timeoutSeconds: 60);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("model.kind", run.StdErr);
        Assert.Contains("training.k", run.StdErr);
        Assert.Contains("training.lrD", run.StdErr);
        Assert.Contains("workers 2", CliProcess.Run(["status", "--cluster", cluster.Address], timeoutSeconds: 60).StdOut);
    }

    [Fact]
    public void A_client_that_cannot_reach_the_cluster_fails_within_seconds_naming_the_address()
    {
        var port = LiveCluster.FreePort();
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "ok.json");
        File.WriteAllText(spec, """{"name": "ok", "dataset": {"kind": "ring8"}, "model": {"kind": "mlp"}}""");
        var run = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--connect-timeout", "3"], timeoutSeconds: 60);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains($"127.0.0.1:{port}", run.StdErr);
        Assert.Contains("could not reach", run.StdErr);
        Assert.True(run.Elapsed < TimeSpan.FromSeconds(20), $"took {run.Elapsed}");
    }

    [Fact]
    public void Garbage_bytes_sent_to_a_node_and_to_a_data_plane_port_do_not_crash_it()
    {
        var dataPort = int.Parse(DataPortRegex().Match(string.Concat(cluster.WorkerLogs())).Groups[1].Value);
        foreach (var port in new[] { cluster.Port, dataPort })
        {
            using var tcp = new TcpClient();
            tcp.Connect(IPAddress.Loopback, port);
            var junk = new byte[64 * 1024];
            new Random(7).NextBytes(junk);
            try { tcp.GetStream().Write(junk); } catch (IOException) { }   // the node may hang up on us: fine
        }
        var status = CliProcess.Run(["status", "--cluster", cluster.Address], timeoutSeconds: 60);
        Assert.True(status.ExitCode == 0, status.StdErr);
        Assert.Contains("workers 2", status.StdOut);
    }

    [GeneratedRegex("final parameter checksum ([0-9a-f]{64})")]
    private static partial Regex ChecksumRegex();

    [GeneratedRegex("data plane 127\\.0\\.0\\.1:(\\d+)")]
    private static partial Regex DataPortRegex();
}
