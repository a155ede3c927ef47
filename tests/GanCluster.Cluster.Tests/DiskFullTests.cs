using System.Diagnostics;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// A real full disk under the seed's Node:RunsRoot (a 5 MB tmpfs): the run ends with the path and the OS's message,
/// no staging folder stays behind, the last good checkpoint is intact, and once there is room the same spec resumes
/// from it and completes.
/// </summary>
[Collection("processes")]
public class DiskFullTests
{
    // MLP with 256 hidden units: a checkpoint is 3.2 MB (weights and Adam moments), so the second one does not fit.
    const string Spec = """
        { "name": "full", "dataset": { "kind": "ring8", "size": 4000 }, "model": { "kind": "mlp", "nz": 4, "ngf": 256, "ndf": 256 },
          "training": { "iterations": 600, "batchSize": 32, "seed": 3, "logEvery": 100 }, "checkpoint": { "every": 200, "keep": 3 }, "output": "full" }
        """;

    [Fact]
    public void A_full_disk_on_the_seed_ends_the_run_with_the_path_and_the_os_message_and_loses_nothing_saved()
    {
        using var dir = new TempFolder();
        var runs = Path.Combine(dir.Path, "runs");
        Directory.CreateDirectory(runs);
        Mount(runs, "size=5m");
        try
        {
            using var nodes = new NodeProcesses { RunsRoot = runs };
            var (port, _, workers) = nodes.StartCluster(1);
            var spec = Path.Combine(dir.Path, "spec.json");
            File.WriteAllText(spec, Spec);
            var output = Path.Combine(runs, "full");

            var full = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 300);
            Assert.True(full.ExitCode == 1, full.StdOut + full.StdErr + nodes.AllLogs());
            Assert.True(full.StdOut.Contains($"failed: saving the outputs of iteration 400 failed: No space left on device : '{output}/.upload-00000400/"), full.StdOut);
            Assert.Empty(Directory.GetDirectories(output, ".upload-*"));                         // no staging left behind
            Assert.Equal(["iter-00000200"], Directory.GetDirectories(Path.Combine(output, "checkpoints")).Select(Path.GetFileName));
            // Rank 0 was told at once and stopped sending, rather than waiting out its upload timeout.
            nodes.WaitForLog(workers[0], "the seed refused the outputs of iteration 400: saving the outputs of iteration 400 failed on the seed");

            // Room again: the same spec resumes from the checkpoint written before the disk filled, and completes.
            Mount(runs, "remount,size=40m");
            var resumed = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 300);
            Assert.True(resumed.ExitCode == 0, resumed.StdOut + resumed.StdErr + nodes.AllLogs());
            Assert.Contains($"resuming from {output}/checkpoints/iter-00000200 (iteration 200)", resumed.StdOut);
            Assert.Contains("completed: 600 iterations", resumed.StdOut);
            Assert.Equal(Enumerable.Range(1, 6).Select(i => i * 100L),
                File.ReadLines(Path.Combine(output, "metrics.csv")).Skip(1).Where(l => l.Split(',')[1].Length > 0).Select(l => long.Parse(l.Split(',')[0])));
        }
        finally
        {
            Run("umount", "-l", runs);
        }
    }

    /// <summary>A tmpfs at <paramref name="path"/>: a real file system with a real size limit (needs root, as CI and this machine have).</summary>
    static void Mount(string path, string options)
    {
        var (code, output) = Run("mount", "-t", "tmpfs", "-o", options, "tmpfs", path);
        Assert.True(code == 0, $"mount -t tmpfs -o {options} failed ({code}): {output}. This test needs root (CAP_SYS_ADMIN) for a small tmpfs.");
    }

    static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output);
    }
}
