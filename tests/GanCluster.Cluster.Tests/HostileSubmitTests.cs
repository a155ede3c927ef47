using GanCluster.Actors.Coordinator;
using GanCluster.Cli;
using GanCluster.Protocol;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Bad specs sent straight to a real seed process, past the client's own checks (a hostile client need not run ours):
/// every one is answered with a refusal naming the field, and the coordinator neither crashes nor restarts.
/// </summary>
[Collection("processes")]
public class HostileSubmitTests
{
    [Fact]
    public void Over_a_hundred_bad_specs_sent_raw_to_the_seed_are_each_refused_naming_the_field()
    {
        using var nodes = new NodeProcesses();
        var port = NodeProcesses.FreePort();
        var seed = nodes.StartSeed(port);
        nodes.WaitForWorkers(port, 0);   // the seed answers status
        var cases = HostileSpecs.All().Append(HostileSpecs.Oversized()).ToList();
        using var client = new ClusterConnection($"127.0.0.1:{port}", TimeSpan.FromSeconds(30), TestCredentials.Cluster);
        var problems = new List<string>();
        var slowest = TimeSpan.Zero;
        foreach (var c in cases)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            client.Send(new RunProtocol.SubmitRun(c.Json, Watch: false));
            var answer = client.Next(TimeSpan.FromSeconds(30));
            if (clock.Elapsed > slowest) slowest = clock.Elapsed;
            switch (answer)
            {
                case null:
                    problems.Add($"{c.Name}: no answer within 30 s (dropped or hung)");
                    break;
                case RunProtocol.SubmitNack nack when nack.Errors.Any(e => e.Split(": ")[0].Split(", ").Contains(c.Field)):
                    break;
                case RunProtocol.SubmitNack nack:
                    problems.Add($"{c.Name}: refused without naming {c.Field}: {nack.Reason}; {string.Join("; ", nack.Errors)}");
                    break;
                default:
                    problems.Add($"{c.Name}: answered {answer}");
                    break;
            }
        }
        client.Send(new RunProtocol.GetStatus());
        var status = client.Next(TimeSpan.FromSeconds(30));
        var log = nodes.Log(seed);
        Assert.True(problems.Count == 0, $"{problems.Count} of {cases.Count} mishandled:\n{string.Join("\n", problems)}\n{log}");
        Assert.Equal(RunState.Idle, Assert.IsType<RunProtocol.StatusReported>(status).State);
        Assert.False(NodeProcesses.Exited(seed), log);
        Assert.DoesNotContain("Restarting", log);              // the coordinator actor never failed
        Assert.DoesNotContain("NullReferenceException", log);
        Console.WriteLine($"hostile specs raw to the seed: {cases.Count} refused, 0 crashes, 0 silent drops; slowest answer {slowest.TotalSeconds:F2} s");
    }

    [Fact]
    public void A_second_seed_on_a_port_in_use_fails_to_start_and_says_so()
    {
        using var nodes = new NodeProcesses();
        var port = NodeProcesses.FreePort();
        var first = nodes.StartSeed(port);
        // Before, Akka bound with SO_REUSEADDR: both "started", each formed its own cluster, and status answered from either.
        var e = Assert.Throws<InvalidOperationException>(() => nodes.StartSeed(port));
        Assert.Contains("seed failed to start (exit 2;", e.Message);
        Assert.Contains($"Node:Port {port} on 127.0.0.1 is already in use", e.Message);
        nodes.WaitForWorkers(port, 0);   // the first seed still answers
        Assert.False(NodeProcesses.Exited(first), nodes.AllLogs());
    }

    [Fact]
    public void Outputs_outside_the_runs_root_and_folders_of_other_runs_are_refused_by_the_client_and_the_seed()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.RunsRoot = Path.Combine(dir.Path, "runs");
        var port = NodeProcesses.FreePort();
        nodes.StartSeed(port);
        nodes.WaitForWorkers(port, 0);
        string Spec(string output, int ngf = 8) => HostileSpecs.Valid().ToJsonString()
            .Replace("\"output\":\"out\"", $"\"output\":{System.Text.Json.JsonSerializer.Serialize(output)}").Replace("\"ngf\":8", $"\"ngf\":{ngf}");

        using var client = new ClusterConnection($"127.0.0.1:{port}", TimeSpan.FromSeconds(30), TestCredentials.Cluster);
        RunProtocol.SubmitNack Refused(string json)
        {
            client.Send(new RunProtocol.SubmitRun(json, Watch: false));
            return Assert.IsType<RunProtocol.SubmitNack>(client.Next(TimeSpan.FromSeconds(30)));
        }
        var escape = Path.Combine(dir.Path, "escape");
        foreach (var output in new[] { escape, "/etc/gancluster-test", "../escape", "x/../../escape" })
        {
            var nack = Refused(Spec(output));
            Assert.Contains(nack.Errors, e => e.StartsWith("output: ", StringComparison.Ordinal));
            // The client refuses it too, before anything leaves the machine.
            var file = Path.Combine(dir.Path, "spec.json");
            File.WriteAllText(file, Spec(output));
            var cli = CliProcess.Run(["submit", file, "--cluster", "127.0.0.1:1", "--connect-timeout", "1"], timeoutSeconds: 60);
            Assert.Equal(2, cli.ExitCode);
            Assert.Contains("output: must", cli.StdErr);
        }
        Assert.False(Directory.Exists(escape));
        Assert.False(Directory.Exists("/etc/gancluster-test"));

        // A folder under the root that holds another run's spec.json is that run's.
        var owned = Path.Combine(nodes.RunsRoot, "owned");
        Directory.CreateDirectory(owned);
        File.WriteAllText(Path.Combine(owned, "spec.json"), Spec("owned", ngf: 16));
        var other = Refused(Spec("owned"));
        Assert.Contains(other.Errors, e => e.StartsWith("output: ", StringComparison.Ordinal) && e.Contains("belongs to run \"hostile\"") && e.Contains("model.ngf"));
        // Its own spec may go on: it passes the folder check and is refused only for want of workers.
        Assert.Equal("no workers have joined the cluster", Refused(Spec("owned", ngf: 16)).Reason);
    }

    [Fact]
    public void Through_the_receptionist_a_client_may_only_submit_watch_cancel_and_ask_for_status()
    {
        using var nodes = new NodeProcesses();
        var port = NodeProcesses.FreePort();
        var seed = nodes.StartSeed(port);
        nodes.WaitForWorkers(port, 0);
        using var client = new ClusterConnection($"127.0.0.1:{port}", TimeSpan.FromSeconds(30), TestCredentials.Cluster);
        // What the probe did without credentials: register a fake worker, fail a run, read a checkpoint, upload a file.
        IGanClusterMessage[] forged =
        [
            new WorkerProtocol.RegisterWorker("fake:1/cpu", "cpu", "127.0.0.1", 9),
            new WorkerProtocol.StepFailed("run-1", 1, new StepKey(0, StepPhase.Discriminator, 0), 0, "forged"),
            new WorkerProtocol.LeaveRun("fake:1/cpu"),
            new ArtifactProtocol.ListCheckpoint("run-1", "/etc"),
            new ArtifactProtocol.ReadCheckpoint("run-1", "/etc", "passwd", 0),
            new ArtifactProtocol.FileChunk("run-1", 1, "samples/pwned.sh", 0, [1, 2, 3], true),
            new ArtifactProtocol.ArtifactsUploaded("run-1", 1, ["samples/pwned.sh"], false),
        ];
        foreach (var m in forged)
        {
            client.Send(m);
            var refused = Assert.IsType<RunProtocol.Refused>(client.Next(TimeSpan.FromSeconds(30)));
            Assert.Equal(m.GetType().Name, refused.Message);
        }
        // Past the gateway: straight at the coordinator over Akka.Remote, which any process reaching the port can do.
        var coordinator = client.System.ActorSelection($"akka.ssl.tcp://gancluster@127.0.0.1:{port}/user/coordinator/coordinator");
        var me = client.System.ActorOf(Akka.Actor.Props.Empty, "hostile");
        coordinator.Tell(new WorkerProtocol.RegisterWorker("direct:1/cpu", "cpu", "127.0.0.1", 9), me);
        coordinator.Tell(new WorkerProtocol.StepFailed("run-1", 1, new StepKey(0, StepPhase.Discriminator, 0), 0, "forged"), me);
        nodes.WaitFor(() => nodes.Log(seed).Contains("refused StepFailed from akka.ssl.tcp://gancluster-client@"), TimeSpan.FromSeconds(30),
            "the direct messages refused");
        Assert.Contains("refused RegisterWorker from akka.ssl.tcp://gancluster-client@", nodes.Log(seed));

        // The seed's store, which workers address directly for bulk bytes, checks its senders itself.
        var store = client.System.ActorSelection($"akka.ssl.tcp://gancluster@127.0.0.1:{port}/user/coordinator/coordinator/{CheckpointActor.Name}");
        store.Tell(new ArtifactProtocol.ReadCheckpoint("run-1", "/etc", "passwd", 0), me);
        store.Tell(new ArtifactProtocol.FileChunk("run-1", 1, "samples/pwned.sh", 0, [1, 2, 3], true), me);
        nodes.WaitFor(() => nodes.Log(seed).Contains("refused FileChunk of run run-1 from akka.ssl.tcp://gancluster-client@"), TimeSpan.FromSeconds(30),
            "the store's refusals");
        Assert.Contains("refused ReadCheckpoint from akka.ssl.tcp://gancluster-client@", nodes.Log(seed));

        client.Send(new RunProtocol.GetStatus());
        var status = Assert.IsType<RunProtocol.StatusReported>(client.Next(TimeSpan.FromSeconds(30)));
        Assert.Equal((0, RunState.Idle), (status.Workers, status.State));   // no fake worker was registered either way
        Assert.Contains("refused RegisterWorker from client", nodes.Log(seed));
    }
}
