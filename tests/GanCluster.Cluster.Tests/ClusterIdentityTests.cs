using GanCluster.Actors;
using GanCluster.Actors.Coordinator;
using GanCluster.Actors.Security;
using GanCluster.Cli;
using GanCluster.Protocol;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// Mutual TLS on Akka.Remote with the cluster's pinned certificate, with real seed and worker processes on loopback:
/// a node or client without the cluster's credentials (none, or another cluster's) can neither join, nor submit,
/// cancel, forge worker messages or read a checkpoint; and nothing starts without credentials unless told --insecure.
/// </summary>
[Collection("processes")]
public class ClusterIdentityTests
{
    const string Spec = """
        { "name": "identity", "dataset": { "kind": "ring8", "size": 4000 }, "model": { "kind": "mlp", "nz": 4, "ngf": 16, "ndf": 16 },
          "training": { "iterations": 1000000, "batchSize": 32, "seed": 3, "logEvery": 50 }, "checkpoint": { "every": 100 }, "output": "identity" }
        """;

    [Fact]
    public void Without_the_clusters_credentials_a_node_cannot_join_and_a_client_can_do_nothing()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        var (port, seed, spec, runId) = StartLongRun(nodes, dir);
        var cluster = $"127.0.0.1:{port}";

        // Strangers: another cluster's valid credentials, and none at all.
        var foreignFolder = Path.Combine(dir.Path, "foreign");
        var foreign = TestCredentials.Foreign(foreignFolder);
        // The start script waits for the join and, when it does not come, says why. Another cluster's credentials fail the
        // TLS handshake, which stops the node (so its generous limit costs nothing, and a start slowed by the training run
        // still ends in that failure); with none, it keeps retrying and is left running.
        var strangers = new[] { new[] { "--credentials", foreignFolder, "--join-timeout", "60" }, ["--insecure", "--join-timeout", "10"] }
            .Select(flags => nodes.TryStart("start-worker.sh", ["--host", "127.0.0.1", "--seeds", NodeProcesses.Seeds([port]), "--cpu-threads", "1",
                "--log-dir", nodes.Logs, .. flags])).ToList();
        Assert.True(strangers[0].ExitCode == 2, $"exit {strangers[0].ExitCode}: {strangers[0].StdOut}{strangers[0].StdErr}");
        Assert.Contains("worker failed to start (exit 2", strangers[0].StdErr);
        Assert.Contains("error: the TLS handshake with the cluster failed: this node's Node:Credentials are not the cluster's", strangers[0].StdErr);
        Assert.True(strangers[1].ExitCode == 1, $"exit {strangers[1].ExitCode}: {strangers[1].StdOut}{strangers[1].StdErr}");
        Assert.Contains("worker has not joined the cluster after 10 s", strangers[1].StdErr);
        Assert.Contains("that this node has the cluster's credentials", strangers[1].StdErr);
        Assert.Contains("the node is still running and retrying", strangers[1].StdErr);
        Assert.All(strangers, r => Assert.DoesNotContain("started", r.StdOut));
        Assert.All(strangers, r => Assert.NotNull(r.Pid));
        var (foreignWorker, plainWorker) = (strangers[0].Pid!.Value, strangers[1].Pid!.Value);
        nodes.WaitFor(() => nodes.Log(seed).Contains("is not this cluster's") && nodes.Log(seed).Contains("not an SSL/TLS record"),
            TimeSpan.FromMinutes(1), "the seed refused both strangers' connections");

        // Clients: the CLI with either, and a hostile client of our own that forges what the probe forged.
        var failures = new List<string>();
        foreach (var who in new[] { new[] { "--credentials", foreignFolder }, ["--insecure"] })
        {
            foreach (var command in new[] { new[] { "status" }, ["cancel", runId], ["submit", spec] })
            {
                // A foreign client fails as soon as it refuses the seed's certificate, so its limit can be generous (a
                // client that starts while a run trains on both cores may need seconds to get that far); a plain one
                // hears nothing and waits out its limit.
                var limit = who[0] == "--insecure" ? "3" : "15";
                var r = CliProcess.Run([.. command, "--cluster", cluster, "--connect-timeout", limit, .. who], timeoutSeconds: 90);
                // With another cluster's credentials the client says why once its TLS check has seen the seed's
                // certificate (not the pinned one); a handshake that never got that far leaves it the general hint.
                var why = who[0] == "--insecure" ? ["was it started with Node:Insecure=true"]
                    : new[] { "is not the one these credentials pin", "were these credentials made for its cluster" };
                if (r.ExitCode != 2 || !r.StdErr.Contains("could not reach a GanCluster seed") || !why.Any(r.StdErr.Contains))
                    failures.Add($"{string.Join(' ', command)} {string.Join(' ', who)}: exit {r.ExitCode}: {r.StdOut}{r.StdErr}");
            }
        }
        foreach (var credentials in new[] { foreign, null })
        {
            using var client = new ClusterConnection(cluster, TimeSpan.FromSeconds(3), credentials);
            IGanClusterMessage[] forged =
            [
                new RunProtocol.GetStatus(),
                new RunProtocol.CancelRun(runId, "stranger"),
                new WorkerProtocol.StepFailed(runId, 1, new StepKey(0, StepPhase.Discriminator, 0), 0, "forged"),
                new WorkerProtocol.RegisterWorker("fake:1/cpu", "cpu", "127.0.0.1", 9),
                new ArtifactProtocol.ReadCheckpoint(runId, "identity", "G.pt", 0),
            ];
            foreach (var m in forged) client.Send(m);
            // Past the receptionist, straight at the coordinator (Akka.Remote addresses are no secret).
            client.System.ActorSelection($"{ClusterHocon.NodeAddress(credentials is not null, cluster)}/user/coordinator/coordinator")
                .Tell(new WorkerProtocol.StepFailed(runId, 1, new StepKey(0, StepPhase.Discriminator, 0), 0, "forged"));
            // Nothing comes back: the connection never gets past TLS (the client refuses the seed, gives up, or hears
            // nothing).
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(8);
            while (until - DateTime.UtcNow is var left && left > TimeSpan.Zero && client.Next(left) is { } answer)
                if (answer is not (ClusterConnection.ContactLost or ClusterConnection.CertificateRefused))
                {
                    failures.Add($"{(credentials is null ? "plain" : "foreign")} client was answered {answer}");
                    break;
                }
        }

        // The run went on, untouched, with its one real worker; the strangers never became members.
        var before = Status(cluster);
        nodes.WaitFor(() => Status(cluster).Iteration > before.Iteration + 50, TimeSpan.FromMinutes(1), "the run still training");
        var after = Status(cluster);
        var log = nodes.Log(seed);
        Assert.True(failures.Count == 0, string.Join("\n", failures) + "\n" + log);
        // Still training (a save's snapshot between two segments is training too), on its one worker.
        Assert.Contains(after.State, new[] { RunState.Running, RunState.Saving });
        Assert.Equal((runId, 1), (after.RunId, after.Workers));
        Assert.DoesNotContain("refused StepFailed", log);          // never even reached the coordinator's checks
        foreach (var stranger in new[] { foreignWorker, plainWorker })
            Assert.DoesNotContain("Welcome from", nodes.Log(stranger));
        // Both sides check the certificate; whichever refuses first closes the handshake, so the stranger's log has either its
        // own refusal or the seed's closing (the pin on the connecting side is proved alone, by the impostor seed test).
        Assert.Contains("TLS handshake failed", nodes.Log(foreignWorker));

        var cancel = CliProcess.Run(["cancel", runId, "--cluster", cluster, "--wait"], timeoutSeconds: 120);
        Assert.True(cancel.ExitCode == 0, cancel.StdOut + cancel.StdErr);
    }

    [Fact]
    public async Task A_node_and_a_client_refuse_a_seed_that_does_not_present_the_clusters_certificate()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        // An impostor on the seed's address (a hijacked DNS name or port) with another cluster's valid certificate; it
        // would accept anyone, so only the connecting side's pin can refuse it.
        await using var impostor = new ImpostorSeed(TestCredentials.Foreign(Path.Combine(dir.Path, "impostor")).Certificate);

        var worker = nodes.TryStart("start-worker.sh", ["--host", "127.0.0.1", "--seeds", NodeProcesses.Seeds([impostor.Port]), "--cpu-threads", "1",
            "--log-dir", nodes.Logs, "--join-timeout", "30"]);
        Assert.True(worker.ExitCode == 2, $"exit {worker.ExitCode}: {worker.StdOut}{worker.StdErr}");
        Assert.Contains("error: the TLS handshake with the cluster failed", worker.StdErr);
        var log = nodes.Log(worker.Pid!.Value);
        Assert.Matches(@"refused a TLS connection with .*127\.0\.0\.1.*: its certificate \(CN=[^)]*\) is not this cluster's", log);
        Assert.DoesNotContain("Welcome from", log);

        var client = CliProcess.Run(["status", "--cluster", $"127.0.0.1:{impostor.Port}", "--connect-timeout", "15"], timeoutSeconds: 90);
        Assert.True(client.ExitCode == 2, $"exit {client.ExitCode}: {client.StdOut}{client.StdErr}");
        Assert.Contains("is not the one these credentials pin", client.StdErr);

        // Both connected and got as far as the impostor's certificate, and neither sent it a byte past the handshake.
        Assert.True(impostor.Connections >= 2, $"{impostor.Connections} connection(s)");
        Assert.Equal(0, impostor.BytesReceived);
    }

    /// <summary>A TLS listener on loopback that presents <c>certificate</c>, takes any client and counts what it is sent.</summary>
    sealed class ImpostorSeed : IAsyncDisposable
    {
        readonly System.Net.Sockets.TcpListener _listener = new(System.Net.IPAddress.Loopback, 0);
        readonly System.Security.Cryptography.X509Certificates.X509Certificate2 _certificate;
        readonly CancellationTokenSource _stop = new();
        readonly Task _accepting;
        int _connections;
        long _bytes;

        public ImpostorSeed(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate)
        {
            _certificate = certificate;
            _listener.Start();
            _accepting = Task.Run(AcceptAsync);
        }

        public int Port => ((System.Net.IPEndPoint)_listener.LocalEndpoint).Port;
        public int Connections => Volatile.Read(ref _connections);
        public long BytesReceived => Interlocked.Read(ref _bytes);

        async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                System.Net.Sockets.TcpClient tcp;
                try { tcp = await _listener.AcceptTcpClientAsync(_stop.Token); }
                catch (OperationCanceledException) { return; }
                catch (System.Net.Sockets.SocketException) { return; }
                Interlocked.Increment(ref _connections);
                _ = Task.Run(() => ServeAsync(tcp));
            }
        }

        async Task ServeAsync(System.Net.Sockets.TcpClient tcp)
        {
            using var _ = tcp;
            await using var tls = new System.Net.Security.SslStream(tcp.GetStream(), false, (_, _, _, _) => true);
            try
            {
                await tls.AuthenticateAsServerAsync(new System.Net.Security.SslServerAuthenticationOptions
                {
                    ServerCertificate = _certificate,
                    ClientCertificateRequired = true,
                }, _stop.Token);
                var buffer = new byte[4096];
                int n;
                while ((n = await tls.ReadAsync(buffer, _stop.Token)) > 0) Interlocked.Add(ref _bytes, n);
            }
            catch (Exception e) when (e is IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException) { }
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            _listener.Stop();
            await _accepting;
        }
    }

    [Fact]
    public async Task A_member_cannot_speak_for_another_worker_nor_upload_unless_asked_to_save_as_rank_0()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        var (port, seed, _, runId) = StartLongRun(nodes, dir);
        var cluster = $"127.0.0.1:{port}";
        var worker = Assert.Single(Status(cluster).Members!).WorkerId;

        // A real member with the worker role and the cluster's credentials (a compromised or buggy worker node).
        var config = Akka.Configuration.ConfigurationFactory.ParseString($$"""
            akka.actor.provider = cluster
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
            akka.cluster.roles = [worker]
            akka.cluster.seed-nodes = ["{{ClusterHocon.NodeAddress(true, cluster)}}"]
            akka.loglevel = WARNING
            """);
        using var system = ClusterHocon.CreateSystem(ClusterHocon.SystemName, config, TestCredentials.Cluster);
        var joined = new TaskCompletionSource();
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => joined.TrySetResult());
        await joined.Task.WaitAsync(TimeSpan.FromMinutes(1));
        var me = system.ActorOf(Akka.Actor.Props.Empty, "member");
        var coordinator = system.ActorSelection($"{ClusterHocon.NodeAddress(true, cluster)}/user/coordinator/coordinator");
        coordinator.Tell(new WorkerProtocol.StepFailed(runId, 1, new StepKey(0, StepPhase.Discriminator, 0), 0, "forged for rank 0"), me);
        coordinator.Tell(new WorkerProtocol.LeaveRun(worker), me);
        coordinator.Tell(new WorkerProtocol.RegisterWorker("127.0.0.1:1/cpu", "cpu", "127.0.0.1", 9), me);
        // Uploads go straight to the seed's store next to the coordinator, which checks the sender itself.
        var store = system.ActorSelection($"{ClusterHocon.NodeAddress(true, cluster)}/user/coordinator/coordinator/{CheckpointActor.Name}");
        store.Tell(new ArtifactProtocol.FileChunk(runId, 100, "samples/iter_00000100.png", 0, [1, 2, 3], true), me);
        store.Tell(new ArtifactProtocol.ArtifactsUploaded(runId, 100, ["samples/iter_00000100.png"], false), me);
        coordinator.Tell(new ArtifactProtocol.ArtifactsFailed(runId, 100, "forged"), me);
        nodes.WaitFor(() => nodes.Log(seed).Contains("refused ArtifactsFailed of run"), TimeSpan.FromSeconds(30), "the forged messages refused");

        var log = nodes.Log(seed);
        foreach (var type in new[] { "StepFailed", "LeaveRun", "RegisterWorker" })
            Assert.Contains($"refused {type} from akka.ssl.tcp://gancluster@127.0.0.1:", log);
        foreach (var type in new[] { "FileChunk", "ArtifactsUploaded" })
            Assert.Contains($"refused {type} of run {runId} from akka.ssl.tcp://gancluster@127.0.0.1:", log);
        var before = Status(cluster);
        nodes.WaitFor(() => Status(cluster).Iteration > before.Iteration + 50, TimeSpan.FromMinutes(1), "the run still training");
        var after = Status(cluster);
        // Still training (a save's snapshot between two segments is training too), on the one real worker at rank 0.
        Assert.Contains(after.State, new[] { RunState.Running, RunState.Saving });
        Assert.Equal((1, 0), (after.Workers, after.Members!.Single(m => m.WorkerId == worker).Rank));
        Assert.Null(after.LastError);
        await Akka.Cluster.Cluster.Get(system).LeaveAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var cancel = CliProcess.Run(["cancel", runId, "--cluster", cluster, "--wait"], timeoutSeconds: 120);
        Assert.True(cancel.ExitCode == 0, cancel.StdOut + cancel.StdErr);
    }

    [Fact]
    public void With_Node_RingEncryption_two_workers_train_over_an_authenticated_and_encrypted_ring()
    {
        using var nodes = new NodeProcesses();
        using var dir = new TempFolder();
        nodes.ExtraArgs.Add("--Node:RingEncryption=true");
        var (port, _, workers) = nodes.StartCluster(2);
        var spec = Path.Combine(dir.Path, "spec.json");
        File.WriteAllText(spec, Spec.Replace("1000000", "300").Replace("\"every\": 100", "\"every\": 300"));
        var run = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}", "--wait"], timeoutSeconds: 300);
        Assert.True(run.ExitCode == 0, run.StdOut + run.StdErr + nodes.AllLogs());
        Assert.Contains("completed: 300 iterations on 2 worker(s)", run.StdOut);
        foreach (var w in workers)
            Assert.Contains("of 2, local batch 16, 4000 samples; ring authenticated and encrypted", nodes.Log(w));
    }

    /// <summary>A seed, one worker and a run that trains until cancelled.</summary>
    static (int Port, int Seed, string Spec, string RunId) StartLongRun(NodeProcesses nodes, TempFolder dir)
    {
        var (port, seed, _) = nodes.StartCluster(1);
        var spec = Path.Combine(dir.Path, "spec.json");
        File.WriteAllText(spec, Spec);
        var submitted = CliProcess.Run(["submit", spec, "--cluster", $"127.0.0.1:{port}"], timeoutSeconds: 120);
        Assert.True(submitted.ExitCode == 0, submitted.StdOut + submitted.StdErr);
        return (port, seed, spec, submitted.StdOut.Split(' ')[2]);
    }

    static RunProtocol.StatusReported Status(string cluster)
    {
        using var c = new ClusterConnection(cluster, TimeSpan.FromSeconds(30), TestCredentials.Cluster);
        c.Send(new RunProtocol.GetStatus());
        return Assert.IsType<RunProtocol.StatusReported>(c.First());
    }

    [Fact]
    public void Nothing_starts_without_credentials_unless_told_insecure_and_insecure_is_loud()
    {
        using var dir = new TempFolder();
        var missing = Path.Combine(dir.Path, "missing");
        var port = NodeProcesses.FreePort();

        // The node itself: neither Node:Credentials nor Node:Insecure.
        var node = RunNode($"--Node:Roles=seed --Node:Port={port} --Node:Seeds=127.0.0.1:{port}", dir.Path);
        Assert.Equal(2, node.ExitCode);
        Assert.Contains("Node:Credentials must name the cluster's credentials folder", node.Output);

        // A folder without its secret: refused, naming the file.
        Directory.CreateDirectory(Path.Combine(dir.Path, "half"));
        File.Copy(Path.Combine(TestCredentials.Folder, ClusterCredentials.CertificateFile), Path.Combine(dir.Path, "half", ClusterCredentials.CertificateFile));
        var half = RunNode($"--Node:Roles=seed --Node:Port={port} --Node:Seeds=127.0.0.1:{port} --Node:Credentials={Path.Combine(dir.Path, "half")}", dir.Path);
        Assert.Equal(2, half.ExitCode);
        Assert.Contains($"{ClusterCredentials.SecretFile} is missing", half.Output);

        // The scripts and the CLI, pointed at a folder that does not exist.
        var env = new Dictionary<string, string> { [ClusterCredentials.EnvironmentVariable] = missing };
        var script = Run(Path.Combine(NodeProcesses.FindRoot(), "scripts", "start-seed.sh"), ["--port", port.ToString(), "--log-dir", dir.Path], env);
        Assert.Equal(2, script.ExitCode);
        Assert.Contains("no cluster credentials in " + missing, script.Output);
        var cli = CliProcess.Run(["status", "--cluster", $"127.0.0.1:{port}"], env);
        Assert.Equal(2, cli.ExitCode);
        Assert.Contains("no cluster credentials: give --credentials DIR", cli.StdErr);

        // --insecure, explicitly: it runs, says so, and only an --insecure client reaches it.
        using var nodes = new NodeProcesses();
        nodes.ExtraArgs.Add("--insecure");
        var seed = nodes.StartSeed(port);
        Assert.Contains("WARNING: Node:Insecure=true: no TLS and no authentication", nodes.Log(seed));
        var plain = CliProcess.Run(["status", "--cluster", $"127.0.0.1:{port}", "--insecure", "--connect-timeout", "30"]);
        Assert.True(plain.ExitCode == 0, plain.StdOut + plain.StdErr + nodes.AllLogs());
        Assert.Contains("warning: --insecure", plain.StdErr);
        var secure = CliProcess.Run(["status", "--cluster", $"127.0.0.1:{port}", "--connect-timeout", "3"]);
        Assert.Equal(2, secure.ExitCode);
    }

    static (int ExitCode, string Output) RunNode(string flags, string workingDirectory) =>
        NodeProcesses.RunNodeToExit(flags.Split(' '), workingDirectory);

    static (int ExitCode, string Output) Run(string file, string[] args, Dictionary<string, string>? env)
    {
        var r = CliProcess.RunProgram(file, args, env, timeoutSeconds: 120);
        return (r.ExitCode, r.StdOut + r.StdErr);
    }
}
