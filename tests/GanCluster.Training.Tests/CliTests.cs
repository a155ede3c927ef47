namespace GanCluster.Training.Tests;

/// <summary>The CLI as a user runs it, in a child process.</summary>
public class CliTests
{
    [Fact]
    public void Train_local_then_sample_writes_points_from_the_latest_checkpoint()
    {
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "spec.json");
        File.WriteAllText(spec, $$"""
        {"name": "cli", "dataset": {"kind": "ring8", "size": 2000}, "model": {"kind": "mlp", "nz": 2, "ngf": 16, "ndf": 16},
         "training": {"iterations": 10, "batchSize": 32, "logEvery": 5}, "checkpoint": {"every": 10, "keep": 1},
         "output": "{{Path.Combine(dir.Path, "out")}}"}
        """);
        var train = CliProcess.Run(["train", "--local", spec, "--device", "cpu"]);
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
        Assert.Contains("[10/10] Loss_D:", train.StdOut);
        Assert.Contains("==> Training", train.StdOut);

        var csv = Path.Combine(dir.Path, "points.csv");
        var sample = CliProcess.Run(["sample", "--run", Path.Combine(dir.Path, "out"), "--count", "25", "--out", csv]);
        Assert.True(sample.ExitCode == 0, sample.StdErr);
        var lines = File.ReadAllLines(csv);
        Assert.Equal("x,y", lines[0]);
        Assert.Equal(25, lines.Length - 1);

        // The file's extension decides: a PNG scatter of the same points, and a refusal for anything else.
        var png = Path.Combine(dir.Path, "points.png");
        var scatter = CliProcess.Run(["sample", "--run", Path.Combine(dir.Path, "out"), "--count", "25", "--out", png]);
        Assert.True(scatter.ExitCode == 0, scatter.StdErr);
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, File.ReadAllBytes(png)[..4]);
        var other = CliProcess.Run(["sample", "--run", Path.Combine(dir.Path, "out"), "--out", Path.Combine(dir.Path, "points.jpg")]);
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("give a .png (image grid or 2-D scatter) or a .csv (2-D points) file", other.StdErr);
        Assert.False(File.Exists(Path.Combine(dir.Path, "points.jpg")));

        var exported = Path.Combine(dir.Path, "export");
        var export = CliProcess.Run(["export", "--run", Path.Combine(dir.Path, "out"), "--out", exported]);
        Assert.True(export.ExitCode == 0, export.StdErr);
        Assert.Contains("G 0.weight [16, 2]", export.StdOut);     // mlp: Linear(nz=2, 16), weight [out, in]
        Assert.True(File.Exists(Path.Combine(exported, "generator.safetensors")));
        Assert.True(File.Exists(Path.Combine(exported, "discriminator.safetensors")));
    }

    [Fact]
    public void An_invalid_spec_is_refused_with_every_reason_before_anything_runs()
    {
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "bad.json");
        File.WriteAllText(spec, """{"dataset": {"kind": "mnist"}, "model": {"kind": "dcgan"}, "training": {"k": 0, "lrG": -1}}""");
        var run = CliProcess.Run(["train", "--local", spec]);
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("dataset.path: is required", run.StdErr);
        Assert.Contains("training.k: must be 1 to 100", run.StdErr);
        Assert.Contains("training.lrG: must be a positive number", run.StdErr);
        Assert.DoesNotContain("==> Training", run.StdOut);
    }

    [Fact]
    public void A_misspelled_flag_is_named_as_a_flag_and_command_line_mistakes_exit_2_with_the_usage()
    {
        using var dir = new TempFolder();
        var spec = Path.Combine(dir.Path, "ring8.json");
        File.WriteAllText(spec, TinySpecs.Ring8(Path.Combine(dir.Path, "out"), 2).ToJson());
        // Before: --iteratons was taken for the spec's file name.
        var typo = CliProcess.Run(["train", "--local", "--iteratons", "5", spec]);
        Assert.Equal(2, typo.ExitCode);
        Assert.Contains("error: unknown flag --iteratons (did you mean --iterations?)", typo.StdErr);
        Assert.Contains("usage: gancluster train --help", typo.StdErr);
        Assert.DoesNotContain("does not exist", typo.StdErr);
        Assert.DoesNotContain("==> Training", typo.StdOut);

        var missing = CliProcess.Run(["bench", "--batch"]);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--batch", missing.StdErr);
        Assert.Contains("usage: gancluster bench --help", missing.StdErr);

        var command = CliProcess.Run(["trian"]);
        Assert.Equal(2, command.ExitCode);
        Assert.Contains("error: unknown command trian (commands: train,", command.StdErr);

        // A negative number is a value, not a flag: the spec's own check answers.
        var negative = CliProcess.Run(["train", "--local", "--iterations", "-3", spec]);
        Assert.Equal(2, negative.ExitCode);
        Assert.Contains("training.iterations: must be at least 1 (got -3)", negative.StdErr);
    }

    [Fact]
    public void The_cluster_address_comes_from_GANCLUSTER_CLUSTER_or_the_config_file_when_not_given()
    {
        using var dir = new TempFolder();
        var config = Path.Combine(dir.Path, "config.json");
        var none = CliProcess.Run(["status"], env: new() { ["GANCLUSTER_CLUSTER"] = "", ["GANCLUSTER_CONFIG"] = config });
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("which cluster? give --cluster host:port, set GANCLUSTER_CLUSTER=host:port, or write {\"cluster\": \"host:port\"} to " + config, none.StdErr);

        // Port 1 on loopback: nobody answers, and the error names the address the variable gave.
        var fromEnv = CliProcess.Run(["status", "--insecure", "--connect-timeout", "1"], env: new() { ["GANCLUSTER_CLUSTER"] = "127.0.0.1:1", ["GANCLUSTER_CONFIG"] = config });
        Assert.Equal(2, fromEnv.ExitCode);
        Assert.Contains("127.0.0.1:1", fromEnv.StdErr);
        Assert.DoesNotContain("which cluster?", fromEnv.StdErr);

        // The file, when neither the flag nor the variable says; the variable wins over it.
        File.WriteAllText(config, """{ "cluster": "127.0.0.1:2" }""");
        var fromFile = CliProcess.Run(["status", "--insecure", "--connect-timeout", "1"], env: new() { ["GANCLUSTER_CLUSTER"] = "", ["GANCLUSTER_CONFIG"] = config });
        Assert.Equal(2, fromFile.ExitCode);
        Assert.Contains("127.0.0.1:2", fromFile.StdErr);
        var envWins = CliProcess.Run(["status", "--insecure", "--connect-timeout", "1"], env: new() { ["GANCLUSTER_CLUSTER"] = "127.0.0.1:1", ["GANCLUSTER_CONFIG"] = config });
        Assert.Contains("127.0.0.1:1", envWins.StdErr);
        Assert.DoesNotContain("127.0.0.1:2", envWins.StdErr);

        // A misspelled key would do nothing silently: it is named.
        File.WriteAllText(config, """{ "clustre": "127.0.0.1:2" }""");
        var typo = CliProcess.Run(["status", "--insecure"], env: new() { ["GANCLUSTER_CLUSTER"] = "", ["GANCLUSTER_CONFIG"] = config });
        Assert.Equal(2, typo.ExitCode);
        Assert.Contains($"{config}: unknown setting \"clustre\" (known: cluster)", typo.StdErr);
    }

    [Fact]
    public void Help_names_the_command_gancluster()
    {
        var root = CliProcess.Run(["--help"]);
        Assert.Equal(0, root.ExitCode);
        Assert.Contains("gancluster [command] [options]", root.StdOut);
        var train = CliProcess.Run(["train", "--help"]);
        Assert.Equal(0, train.ExitCode);
        Assert.Contains("gancluster train [<spec>] [options]", train.StdOut);
        Assert.DoesNotContain("GanCluster.Cli", root.StdOut + train.StdOut);
    }

    [Fact]
    public void Train_without_local_and_sample_without_checkpoints_explain_themselves()
    {
        var train = CliProcess.Run(["train"]);
        Assert.Equal(2, train.ExitCode);
        Assert.Contains("--local", train.StdErr);

        using var dir = new TempFolder();
        var sample = CliProcess.Run(["sample", "--run", dir.Path, "--out", Path.Combine(dir.Path, "x.png")]);
        Assert.Equal(2, sample.ExitCode);
        Assert.Contains("no valid checkpoint", sample.StdErr);
    }

    [Fact]
    public void Info_self_test_trains_a_step_and_round_trips_a_checkpoint_on_the_cpu()
    {
        var run = CliProcess.Run(["info", "--self-test", "--device", "cpu"]);
        Assert.True(run.ExitCode == 0, run.StdOut + run.StdErr);
        foreach (var check in new[] { "noise", "train-step", "nan-guard", "checkpoint", "samples" })
            Assert.Contains($"PASS {check}: ", run.StdOut);
        Assert.DoesNotContain("FAIL ", run.StdOut);
        Assert.Contains("cudnn.benchmark: ", run.StdOut);
        Assert.Contains("self-test on cpu: all checks passed", run.StdOut);
    }

    [Fact]
    public void Bench_prints_result_lines()
    {
        var run = CliProcess.Run(["bench", "--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "1", "--image", "32", "--variants", "fp32,fp32_flat"]);
        Assert.True(run.ExitCode == 0, run.StdErr);
        Assert.Contains("RESULT gancluster fp32 B=2", run.StdOut);
        Assert.Contains("RESULT gancluster fp32_flat B=2", run.StdOut);
        Assert.Contains("grad_to_host_ms=", run.StdOut);
        Assert.Contains("ngf = ndf = 64", run.StdOut);
    }

    [Fact]
    public void Bench_takes_the_model_width_and_refuses_a_bad_one()
    {
        var run = CliProcess.Run(["bench", "--device", "cpu", "--batch", "2", "--iters", "1", "--warmup", "1", "--image", "32", "--variants", "fp32", "--ngf", "8"]);
        Assert.True(run.ExitCode == 0, run.StdErr);
        Assert.Contains("ngf = ndf = 8", run.StdOut);
        Assert.Contains("RESULT gancluster fp32 B=2", run.StdOut);
        var bad = CliProcess.Run(["bench", "--device", "cpu", "--ngf", "0"]);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("--ngf", bad.StdErr);
    }

    [Fact]
    public async Task Sigterm_stops_a_run_after_its_iteration_with_a_checkpoint_and_a_rerun_resumes()
    {
        using var dir = new TempFolder();
        var output = Path.Combine(dir.Path, "out");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { CliProcess.Dll, "train", "--local", "--device", "cpu", "--output", output, "--iterations", "1000000" })
            psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = new System.Text.StringBuilder();
        var firstLine = new TaskCompletionSource();
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stdout) stdout.AppendLine(e.Data);
            if (e.Data.StartsWith("[500/")) firstLine.TrySetResult();
        };
        p.BeginOutputReadLine();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            await firstLine.Task.WaitAsync(TimeSpan.FromMinutes(2));
        }
        catch (TimeoutException)
        {
            p.Kill(entireProcessTree: true);   // never leave a spinning trainer behind for the tests that follow
            var err = await stderr;
            lock (stdout) Assert.Fail($"no [500/...] line within 2 minutes:\n{stdout}\n{err}");
        }

        // While it trains: listed as running, and a second process may not train the same folder.
        try
        {
            var listed = CliProcess.Run(["runs", "--dir", dir.Path], env: new() { ["GANCLUSTER_CLUSTER"] = "", ["GANCLUSTER_CONFIG"] = Path.Combine(dir.Path, "none.json") });
            Assert.True(listed.ExitCode == 0, listed.StdOut + listed.StdErr);
            Assert.Matches(@"\n  \S+ +running +\d+/1000000 +- +.*" + System.Text.RegularExpressions.Regex.Escape(output), listed.StdOut);
            Assert.DoesNotContain("\ncluster ", listed.StdOut);   // no cluster named: local runs only
            var second = CliProcess.Run(["train", "--local", "--device", "cpu", "--output", output, "--iterations", "1000000"]);
            Assert.Equal(2, second.ExitCode);
            Assert.Contains($"is being trained by another process ({p.Id}@", second.StdErr);
        }
        catch
        {
            p.Kill(entireProcessTree: true);
            throw;
        }

        System.Diagnostics.Process.Start("kill", ["-TERM", p.Id.ToString()])!.WaitForExit();
        Assert.True(p.WaitForExit(60_000), "did not stop within 60 s of SIGTERM");
        p.WaitForExit();   // a timed wait does not wait for the last stdout lines to be handled
        Assert.Equal(130, p.ExitCode);
        Assert.Contains("SIGTERM received", await stderr);

        var checkpoint = GanCluster.Training.Output.CheckpointStore.LatestValid(output, out _);
        Assert.NotNull(checkpoint);
        var stoppedAt = GanCluster.Training.Output.CheckpointStore.ReadState(checkpoint!).Iteration;
        Assert.True(stoppedAt >= 500);
        lock (stdout)
        {
            Assert.Contains($"checkpoint: {checkpoint}", stdout.ToString());
            // Stopped at one of the spec's own checkpoints (every 2000), there is nothing more to save.
            if (stoppedAt % GanCluster.Training.Spec.RunSpec.BuiltInDefault.Checkpoint.Every != 0)
                Assert.Contains($"cancelled at iteration {stoppedAt}: saving a checkpoint", stdout.ToString());
        }

        var resumed = CliProcess.Run(["train", "--local", "--device", "cpu", "--output", output, "--iterations", (stoppedAt + 10).ToString()]);
        Assert.True(resumed.ExitCode == 0, resumed.StdErr);
        Assert.Contains($"resuming from {checkpoint} (iteration {stoppedAt})", resumed.StdOut);
        Assert.Contains($"[{stoppedAt + 10}/{stoppedAt + 10}]", resumed.StdOut);

        // Trained to its (new) end and no longer locked: completed.
        var after = CliProcess.Run(["runs", "--dir", dir.Path], env: new() { ["GANCLUSTER_CLUSTER"] = "", ["GANCLUSTER_CONFIG"] = Path.Combine(dir.Path, "none.json") });
        Assert.Matches($@"\n  \S+ +completed +{stoppedAt + 10}/{stoppedAt + 10} ", after.StdOut);
    }
}
