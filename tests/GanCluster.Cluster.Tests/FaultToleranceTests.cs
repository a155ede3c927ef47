using System.Globalization;
using System.Text.RegularExpressions;
using GanCluster.Training.Output;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Crashes and membership changes with real processes on 127.0.0.1: nodes are killed with SIGKILL, stopped with
/// SIGTERM, started mid-run and restarted, and the run must finish with every iteration trained exactly once.
/// </summary>
[Collection("processes")]
public partial class FaultToleranceTests
{
    static string Spec(string output, int iterations, int logEvery, int checkpointEvery, string optimizers = "") => $$"""
        {
          "name": "ft",
          "dataset": { "kind": "ring8", "size": 20000 },
          "model": { "kind": "mlp", "nz": 4, "ngf": 32, "ndf": 32 },
          "training": { "iterations": {{iterations}}, "batchSize": 64, "lrD": 0.001, "lrG": 0.001, "seed": 11, "logEvery": {{logEvery}}{{optimizers}} },
          "checkpoint": { "every": {{checkpointEvery}}, "keep": 3 },
          "output": "{{output}}"
        }
        """;

    static string WriteSpec(TempFolder dir, int iterations, int logEvery, int checkpointEvery, string optimizers = "")
    {
        var path = Path.Combine(dir.Path, "spec.json");
        File.WriteAllText(path, Spec("out", iterations, logEvery, checkpointEvery, optimizers));   // under the seed's runs root, dir
        return path;
    }

    /// <summary>The iteration column of metrics.csv.</summary>
    static long[] MetricIterations(string output)
    {
        var path = Path.Combine(output, "metrics.csv");
        if (!File.Exists(path)) return [];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(fs);
        return r.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Where(l => l.Split(',') is [_, { Length: > 0 }, ..])   // interval rows; quality rows (2-D sample saves) have no loss_d
            .Select(l => long.Parse(l.Split(',')[0], CultureInfo.InvariantCulture)).ToArray();
    }

    /// <summary><c>submit --wait</c> in the background: the client follows the run to its end.</summary>
    static Task<CliProcess.Result> SubmitAndFollow(TempFolder dir, int iterations, int logEvery, int checkpointEvery, int port, string optimizers = "") =>
        Task.Run(() => CliProcess.Run(["submit", WriteSpec(dir, iterations, logEvery, checkpointEvery, optimizers), "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 600));

    static long LastMetric(string output) => MetricIterations(output).DefaultIfEmpty(0).Max();

    static void AssertEachIterationOnce(string output, int logEvery, int iterations) =>
        Assert.Equal(Enumerable.Range(1, iterations / logEvery).Select(i => (long)i * logEvery), MetricIterations(output));

    /// <summary>The worker logged the run's final checksum (it logs it just before it reports the end, so it is awaited).</summary>
    static void AssertFinalChecksum(NodeProcesses nodes, int worker, string checksum)
    {
        Assert.Matches("^[0-9a-f]{64}$", checksum);
        Assert.Matches(@"rank \d+ final parameter checksum " + checksum, nodes.WaitForLog(worker, $"final parameter checksum {checksum}"));
    }

    [Fact]
    public async Task A_worker_killed_with_SIGKILL_mid_run_is_dropped_and_the_survivors_finish_without_a_repeat_or_a_gap()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var (port, _, workers) = nodes.StartCluster(3);
        var output = Path.Combine(dir.Path, "out");

        // D with SGD and momentum: the survivor loads rank 0's momentum buffers into a replica that has stepped.
        var submit = SubmitAndFollow(dir, 3000, 50, 1000, port, optimizers: ", \"optimizerD\": \"sgd\", \"momentumD\": 0.9");
        nodes.WaitFor(() => LastMetric(output) >= 400, TimeSpan.FromMinutes(3), "400 iterations trained");
        nodes.Kill(workers[2]);
        var killedAt = LastMetric(output);

        var run = await submit;
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("on 2 worker(s)", run.StdOut);
        Assert.Contains("1 worker failure(s) recovered", run.StdOut);
        // Told as it happened (the loss is seen first as a node gone, or as a broken ring on the survivors).
        Assert.Matches(@"\(warning: .*; stopping every worker and re-forming from the most advanced state they hold \(at least it\d+/", run.StdOut);
        Assert.Contains("(re-forming with 2 worker(s)", run.StdOut);
        Assert.True(killedAt < 3000, $"the worker was killed only after the run ended ({killedAt})");
        AssertEachIterationOnce(output, 50, 3000);
        var checksum = ChecksumRegex().Match(run.StdOut).Groups[1].Value;
        AssertFinalChecksum(nodes, workers[0], checksum);
        AssertFinalChecksum(nodes, workers[1], checksum);
        Assert.Null(CheckpointStore.Verify(Path.Combine(output, "checkpoints", "iter-00003000")));
    }

    [Fact]
    public async Task A_worker_started_mid_run_joins_within_two_iterations_and_one_stopped_with_SIGTERM_leaves_without_a_failure()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var (port, seed, first) = nodes.StartCluster(2);
        var output = Path.Combine(dir.Path, "out");

        var submit = SubmitAndFollow(dir, 4000, 50, 1000, port);
        nodes.WaitFor(() => LastMetric(output) >= 300, TimeSpan.FromMinutes(3), "300 iterations trained");

        // Join: registered at some step of iteration N, trained with the others from the end of iteration ≤ N + 1.
        var joiner = nodes.StartWorker(port);
        nodes.WaitFor(() => ReformRegex().IsMatch(nodes.Log(seed)), TimeSpan.FromMinutes(2), "the newcomer included");
        var join = JoinRegex().Match(nodes.Log(seed));
        Assert.True(join.Success, nodes.Log(seed));
        var includedAfter = long.Parse(ReformRegex().Match(nodes.Log(seed)).Groups[1].Value);
        // Registered during a segment: the workers were asked to stop, and stop after the iteration they were in (or at
        // the boundary they had reached). Registered at a boundary (during a save, say): nobody trains meanwhile, so the
        // newcomer is taken in right there.
        // The worker logs that request on a background thread: give the line a moment to arrive before taking it as absent.
        NodeProcesses.TryWaitFor(() => YieldRegex().IsMatch(nodes.Log(first[0])), TimeSpan.FromSeconds(5));
        var asked = YieldRegex().Match(nodes.Log(first[0]));
        var doneWhenRegistered = asked.Success ? long.Parse(asked.Groups[1].Value) : long.Parse(join.Groups[1].Value) + 1;
        Assert.InRange(includedAfter + 1 - doneWhenRegistered, 0, 1);
        nodes.WaitFor(() => nodes.Log(joiner).Contains("rank 2 of 3"), TimeSpan.FromMinutes(1), "the newcomer at rank 2");

        // Leave: SIGTERM makes the node leave its run at the next boundary, then the cluster, then exit.
        nodes.Terminate(first[0]);
        nodes.WaitFor(() => NodeProcesses.Exited(first[0]), TimeSpan.FromMinutes(2), "the stopped worker exited");
        Assert.Contains("left the run", nodes.Log(first[0]));

        var run = await submit;
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.DoesNotContain("failure", run.StdOut);
        Assert.Matches(@"\(worker \S+ registered \(cpu, .*\); it joins run \S+ at the next iteration boundary", run.StdOut);
        Assert.Contains("(re-forming with 3 worker(s)", run.StdOut);
        Assert.Matches(@"\(worker \S+ released from run", run.StdOut);
        Assert.Contains("on 2 worker(s)", run.StdOut);
        AssertEachIterationOnce(output, 50, 4000);
        var checksum = ChecksumRegex().Match(run.StdOut).Groups[1].Value;
        AssertFinalChecksum(nodes, first[1], checksum);
        AssertFinalChecksum(nodes, joiner, checksum);              // the newcomer's weights are everyone's
    }

    [Fact]
    public async Task A_seed_killed_with_SIGKILL_and_restarted_resumes_the_run_skipping_a_corrupt_checkpoint_while_the_client_follows()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var (port, seed, workers) = nodes.StartCluster(2);
        var output = Path.Combine(dir.Path, "out");
        const int every = 500, iterations = 4000;

        // The client follows the run through both restarts of the only seed it knows.
        var submit = SubmitAndFollow(dir, iterations, 100, every, port);

        // 1. Kill the only seed, flip a byte of the newest checkpoint, start the seed again.
        nodes.WaitFor(() => CheckpointStore.List(output).Count >= 2, TimeSpan.FromMinutes(3), "two checkpoints written");
        seed = RestartSeed(nodes, seed, port, corruptNewest: true, output, out var newest);
        var previous = CheckpointStore.PathOf(output, CheckpointNumber(newest) - every);
        nodes.WaitFor(() => nodes.Log(seed).Contains("resuming from"), TimeSpan.FromMinutes(3), "the restarted coordinator resumes");
        var log = nodes.Log(seed);
        Assert.Contains($"skipping checkpoint {newest}: G.bin fails its checksum", log);
        Assert.Contains($"resuming from {previous} (iteration {CheckpointNumber(previous)})", log);
        // Rank 0 takes the checkpoint from the seed (no shared volume assumed), checked against its manifest.
        nodes.WaitFor(() => workers.Any(w => nodes.Log(w).Contains($"fetched checkpoint {previous} from the seed")), TimeSpan.FromMinutes(1), "rank 0 fetched the checkpoint");

        // 2. Kill it again without corruption: at most checkpoint.every iterations are trained again.
        nodes.WaitFor(() => CheckpointStore.List(output).Count > 0 && CheckpointNumber(CheckpointStore.List(output)[0]) > CheckpointNumber(previous) + every,
            TimeSpan.FromMinutes(3), "a new checkpoint after the resume");
        var trainedBeforeKill = LastMetric(output);
        seed = RestartSeed(nodes, seed, port, corruptNewest: false, output, out newest);
        nodes.WaitFor(() => nodes.Log(seed).Contains("resuming from"), TimeSpan.FromMinutes(3), "the restarted coordinator resumes again");
        var resumedAt = long.Parse(ResumedRegex().Match(nodes.Log(seed)).Groups[1].Value);
        Assert.Equal(CheckpointNumber(newest), resumedAt);
        Assert.True(trainedBeforeKill - resumedAt <= every, $"lost {trainedBeforeKill - resumedAt} iterations (checkpoint.every = {every})");

        var run = await submit;
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains($"completed: {iterations} iterations on 2 worker(s)", run.StdOut);
        AssertEachIterationOnce(output, 100, iterations);
        Assert.Null(CheckpointStore.Verify(CheckpointStore.PathOf(output, iterations)));
        var checksum = ChecksumRegex().Match(run.StdOut).Groups[1].Value;
        Assert.All(workers, w => AssertFinalChecksum(nodes, w, checksum));
        Assert.False(File.Exists(Path.Combine(nodes.StateDir, "active-run.json")));   // nothing left to resume
    }

    [Fact]
    public async Task With_two_seeds_the_loss_of_the_one_hosting_the_coordinator_moves_it_and_the_waiting_client_follows_the_run_to_its_end()
    {
        using var nodes = new NodeProcesses();
        nodes.ExtraArgs.Add("--Node:DowningStableAfterSeconds=7");             // every node: about 20 s to fail over instead of 47
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        int p1 = NodeProcesses.FreePort(), p2 = NodeProcesses.FreePort();
        var first = nodes.StartSeed(p1, p1, p2);
        nodes.WaitFor(() => nodes.Log(first).Contains("coordinator started"), TimeSpan.FromMinutes(2), "the coordinator on the first seed");
        var second = nodes.StartSeed(p2, p1, p2);
        var workers = nodes.StartWorkers(2, p1, p2);
        nodes.WaitForWorkers(p2, 2);                               // through the second seed: it is a member and reaches the singleton
        var output = Path.Combine(dir.Path, "out");
        const int every = 400, iterations = 2000;

        // The client is given the first seed only: it learns the other receptionists from it.
        var submit = SubmitAndFollow(dir, iterations, 50, every, p1);
        nodes.WaitFor(() => CheckpointStore.List(output).Count >= 1, TimeSpan.FromMinutes(3), "a checkpoint written");
        nodes.Kill(first);

        nodes.WaitFor(() => nodes.Log(second).Contains("resuming from"), TimeSpan.FromMinutes(3), "the coordinator resumes on the second seed");
        Assert.Contains($"coordinator started on akka.ssl.tcp://gancluster@127.0.0.1:{p2}", nodes.Log(second));
        Assert.Contains("downing by keep-majority after 7 s stable-after, 7 singleton hand-over retries", nodes.Log(second));   // what Akka runs with
        var run = await submit;
        Assert.True(run.ExitCode == 0, $"{run.StdOut}{run.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains($"completed: {iterations} iterations on 2 worker(s)", run.StdOut);
        Assert.Contains($"[{iterations}/{iterations}]", run.StdOut);
        AssertEachIterationOnce(output, 50, iterations);
        Assert.Null(CheckpointStore.Verify(CheckpointStore.PathOf(output, iterations)));
        var checksum = ChecksumRegex().Match(run.StdOut).Groups[1].Value;
        Assert.All(workers, w => AssertFinalChecksum(nodes, w, checksum));
    }

    [Fact]
    public async Task A_run_cancelled_from_the_console_stops_on_a_checkpoint_and_the_same_spec_submitted_again_finishes_it()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var (port, seed, workers) = nodes.StartCluster(2);
        var output = Path.Combine(dir.Path, "out");
        const int iterations = 2000;

        var submit = SubmitAndFollow(dir, iterations, 50, 1000, port);
        nodes.WaitFor(() => LastMetric(output) >= 200, TimeSpan.FromMinutes(3), "200 iterations trained");
        var cancel = CliProcess.Run(["cancel", "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 120);   // the active run, by default
        Assert.True(cancel.ExitCode == 0, $"{cancel.StdOut}{cancel.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains("stops at the next iteration boundary", cancel.StdOut);

        var first = await submit;
        Assert.True(first.ExitCode == 4, $"exit {first.ExitCode}: {first.StdOut}{first.StdErr}");   // 4: cancelled
        var end = CancelledRegex().Match(first.StdOut);
        Assert.True(end.Success, first.StdOut);
        var stoppedAt = long.Parse(end.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.InRange(stoppedAt, 200, iterations - 1);
        var checkpoint = CheckpointStore.PathOf(output, stoppedAt);
        Assert.Contains($"checkpoint {checkpoint}; submit the same spec again to continue from it", first.StdOut);
        Assert.Null(CheckpointStore.Verify(checkpoint));
        Assert.Matches(CancelledRegex(), cancel.StdOut);                         // --wait saw the same end
        Assert.False(File.Exists(Path.Combine(nodes.StateDir, "active-run.json")));   // a restarted seed would not resume it
        Assert.Contains("state Idle", CliProcess.Run(["status", "--cluster", $"127.0.0.1:{port}"]).StdOut);
        Assert.Equal(2, CliProcess.Run(["cancel", "--cluster", $"127.0.0.1:{port}"]).ExitCode);          // nothing left to cancel

        var second = await SubmitAndFollow(dir, iterations, 50, 1000, port);
        Assert.True(second.ExitCode == 0, $"{second.StdOut}{second.StdErr}\n{nodes.AllLogs()}");
        Assert.Contains($"resuming from {checkpoint} (iteration {stoppedAt})", nodes.Log(seed));
        Assert.Contains($"completed: {iterations} iterations on 2 worker(s)", second.StdOut);
        AssertEachIterationOnce(output, 50, iterations);
        var checksum = ChecksumRegex().Match(second.StdOut).Groups[1].Value;
        Assert.All(workers, w => AssertFinalChecksum(nodes, w, checksum));
    }

    [Fact]
    public async Task A_client_following_a_run_whose_only_seed_is_gone_gives_up_after_give_up_after_naming_the_seed()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = dir.Path;
        var (port, seed, _) = nodes.StartCluster(1);
        var output = Path.Combine(dir.Path, "out");

        var spec = WriteSpec(dir, 100_000, 50, 100_000);
        var submit = Task.Run(() => CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait", "--connect-timeout", "2", "--give-up-after", "5"],
            timeoutSeconds: 300));
        nodes.WaitFor(() => LastMetric(output) >= 100, TimeSpan.FromMinutes(2), "100 iterations trained");
        nodes.Kill(seed);
        var killed = DateTime.UtcNow;

        var run = await submit;
        Assert.True(run.ExitCode == 3, $"exit {run.ExitCode}: {run.StdOut}{run.StdErr}");
        Assert.Contains($"no seed answered for 5 s (tried akka.ssl.tcp://gancluster@127.0.0.1:{port}/system/receptionist)", run.StdErr);
        Assert.Contains("The run may still be going", run.StdErr);
        Assert.InRange((DateTime.UtcNow - killed).TotalSeconds, 5, 60);
    }

    [Fact]
    public void A_worker_downed_while_paused_exits_with_code_3_and_its_supervisor_brings_it_back_as_a_new_member()
    {
        using var nodes = new NodeProcesses();
        nodes.ExtraArgs.Add("--Node:DowningStableAfterSeconds=7");
        var port = NodeProcesses.FreePort();
        var seed = nodes.StartSeed(port);
        // Three members, so that keep-majority downs the paused one (with two, the side holding the lowest address stays,
        // which may be the paused worker's: then the seed downs itself).
        nodes.StartWorker(port);
        var supervisor = nodes.StartSupervisedWorker(port);
        nodes.WaitForWorkers(port, 2);
        var node = NodeProcesses.ChildOf(supervisor) ?? throw new InvalidOperationException("no node under the supervisor\n" + nodes.AllLogs());

        // Paused past detection and the resolver's stable-after: the cluster downs it, and a downed member never returns.
        NodeProcesses.Signal("STOP", node);
        nodes.WaitFor(() => nodes.AllLogs().Contains("SBR is downing"), TimeSpan.FromMinutes(2), "the paused worker downed (by whichever member leads the resolver)");
        NodeProcesses.Signal("CONT", node);
        nodes.WaitFor(() => NodeProcesses.Exited(node), TimeSpan.FromMinutes(1), "the downed worker exits");
        nodes.WaitFor(() => nodes.Log(supervisor).Contains("starting it again"), TimeSpan.FromSeconds(30), "the supervisor restarts it");
        Assert.Contains("this node was downed by the cluster; exiting with code 3", nodes.Log(supervisor));

        // Back as a new member, registered again: no capacity lost for good.
        nodes.WaitFor(() => NodeProcesses.ChildOf(supervisor) is { } again && again != node, TimeSpan.FromSeconds(30), "a new node process");
        nodes.WaitForWorkers(port, 2);
        Assert.False(NodeProcesses.Exited(supervisor));
        NodeProcesses.Signal("TERM", supervisor);   // passed on: the node leaves, then the supervisor stops with it
        nodes.WaitFor(() => NodeProcesses.Exited(supervisor), TimeSpan.FromMinutes(2), "the supervisor gone after SIGTERM");
    }

    /// <summary>SIGKILLs the seed, optionally flips a byte of the newest checkpoint, and starts a seed on the same port.</summary>
    static int RestartSeed(NodeProcesses nodes, int seedPid, int port, bool corruptNewest, string output, out string newest)
    {
        nodes.Kill(seedPid);
        nodes.WaitFor(() => NodeProcesses.Exited(seedPid), TimeSpan.FromSeconds(30), "the seed process gone");
        newest = CheckpointStore.List(output)[0];
        if (corruptNewest)
        {
            var g = Path.Combine(newest, "G.bin");
            var bytes = File.ReadAllBytes(g);
            bytes[bytes.Length / 2] ^= 0x40;
            File.WriteAllBytes(g, bytes);
        }
        return nodes.StartSeed(port);
    }

    static long CheckpointNumber(string dir) => long.Parse(Path.GetFileName(dir)["iter-".Length..], CultureInfo.InvariantCulture);

    [GeneratedRegex(@"cancelled: stopped by \S+ after (\d+) of \d+ iterations")]
    private static partial Regex CancelledRegex();

    [GeneratedRegex("final parameter checksum ([0-9a-f]{64})")]
    private static partial Regex ChecksumRegex();

    [GeneratedRegex(@"joins run \S+ at the next iteration boundary \(now after it(\d+)/G\)")]
    private static partial Regex JoinRegex();

    [GeneratedRegex(@"asked to stop at the next iteration boundary \((\d+) iterations done\)")]
    private static partial Regex YieldRegex();

    [GeneratedRegex(@"re-forming with 3 worker\(s\).* after it(\d+)/G")]
    private static partial Regex ReformRegex();

    [GeneratedRegex(@"resuming from \S+ \(iteration (\d+)\)")]
    private static partial Regex ResumedRegex();
}
