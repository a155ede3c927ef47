using System.Text.RegularExpressions;

namespace GanCluster.Cluster.Tests;

/// <summary>Local training is the engine with a world of one: the same spec trains the same model either way.</summary>
[Collection("processes")]
public partial class OneEngineTests
{
    const string Spec = """
        {
          "name": "one-engine",
          "dataset": { "kind": "ring8", "size": 4000 },
          "model": { "kind": "mlp", "nz": 4, "ngf": 32, "ndf": 32 },
          "training": { "k": 2, "iterations": 240, "batchSize": 64, "lrD": 0.001, "lrG": 0.001, "seed": 23, "logEvery": 40 },
          "checkpoint": { "every": 100, "keep": 2 },
          "output": "out"
        }
        """;

    [Fact]
    public void A_local_run_and_a_one_worker_cluster_run_of_the_same_spec_end_with_identical_parameters_and_metrics()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var (port, _, _) = nodes.StartCluster(1);
        var spec = Path.Combine(dir.Path, "spec.json");
        File.WriteAllText(spec, Spec);

        var cluster = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 300);
        Assert.True(cluster.ExitCode == 0, $"{cluster.StdOut}{cluster.StdErr}\n{nodes.AllLogs()}");
        var local = CliProcess.Run(["train", "--local", spec, "--output", Path.Combine(dir.Path, "local")], timeoutSeconds: 300);
        Assert.True(local.ExitCode == 0, local.StdOut + local.StdErr);

        // Bit-identical parameters and BatchNorm statistics: the same SHA-256.
        var checksum = ChecksumRegex().Match(local.StdOut).Groups[1].Value;
        Assert.Equal(64, checksum.Length);
        Assert.Equal(checksum, ChecksumRegex().Match(cluster.StdOut).Groups[1].Value);

        // The same rows, but for the clock (img/s and elapsed time).
        // Interval rows only: quality rows are written when samples are published, which on a cluster is asynchronous.
        static string[] Rows(string folder) => File.ReadAllLines(Path.Combine(folder, "metrics.csv"))
            .Select(l => l.Split(',')).Where(c => c[1].Length > 0).Select(c => string.Join(',', c[..5].Append(c[7]))).ToArray();
        var rows = Rows(Path.Combine(dir.Path, "local"));
        Assert.Equal(7, rows.Length);                                              // header + 240 / 40
        Assert.Equal(rows, Rows(Path.Combine(dir.Path, "out")));
    }

    [GeneratedRegex("final parameter checksum:? ([0-9a-f]{64})")]
    private static partial Regex ChecksumRegex();
}
