using System.CommandLine;
using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using GanCluster.Actors;
using GanCluster.Actors.Security;
using GanCluster.Protocol;

namespace GanCluster.Cli;

/// <summary>
/// <c>gancluster bench-control</c>: what mutual TLS costs on Akka.Remote, side by side with plain TCP in one run. Two
/// actor systems on 127.0.0.1 (each with its own TCP connection, as a seed and a worker): a control round trip
/// (RunSegment out, SegmentDone back, one at a time as the coordinator drives a world of one), and the artifact path's
/// throughput (64 KiB checkpoint chunks, each acknowledged, as rank 0 uploads).
/// </summary>
static class ControlBenchCommand
{
    public static Command Build()
    {
        var roundTrips = new Option<int>("--round-trips") { Description = "Control round trips measured per variant", DefaultValueFactory = _ => 5000 };
        var megabytes = new Option<int>("--mb") { Description = "Megabytes of checkpoint chunks uploaded per variant", DefaultValueFactory = _ => 64 };
        var rounds = new Option<int>("--rounds") { Description = "Alternating rounds of plain and TLS (the table shows each round)", DefaultValueFactory = _ => 3 };
        var cmd = new Command("bench-control", "Measure mutual TLS against plain TCP on Akka.Remote: a control round trip and checkpoint upload throughput")
            { roundTrips, megabytes, rounds };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var (n, mb, k) = (r.GetValue(roundTrips), r.GetValue(megabytes), r.GetValue(rounds));
            if (n < 10) throw new UsageException($"--round-trips must be at least 10 (got {n})");
            if (mb < 1) throw new UsageException($"--mb must be at least 1 (got {mb})");
            if (k < 1) throw new UsageException($"--rounds must be at least 1 (got {k})");
            var folder = Path.Combine(Path.GetTempPath(), "gancluster-bench-credentials-" + Environment.ProcessId);
            try
            {
                var credentials = ClusterCredentials.Create(folder, "bench", days: 1, force: true);
                Console.WriteLine($"# Akka.Remote on 127.0.0.1, two actor systems in this process; {n} control round trips and {mb} MB of 64 KiB chunks per variant; {Environment.ProcessorCount} cores");
                Console.WriteLine("| round | transport | round trip median (µs) | p99 (µs) | round trips/s | upload (MB/s) |");
                Console.WriteLine("|---|---|---|---|---|---|");
                for (var round = 1; round <= k; round++)
                    foreach (var tls in new[] { false, true })
                    {
                        var m = Measure(tls ? credentials : null, n, mb);
                        Console.WriteLine($"| {round} | {(tls ? "mutual TLS" : "plain TCP")} | {m.Median:F0} | {m.P99:F0} | {m.PerSecond:F0} | {m.UploadMBps:F1} |");
                    }
            }
            finally
            {
                try { Directory.Delete(folder, true); } catch (IOException) { }
            }
            return 0;
        }));
        return cmd;
    }

    sealed record Result(double Median, double P99, double PerSecond, double UploadMBps);

    static Result Measure(ClusterCredentials? credentials, int roundTrips, int megabytes)
    {
        var seed = System(credentials, "bench-seed");
        var worker = System(credentials, "bench-worker");
        try
        {
            var echo = worker.ActorOf(Props.Create(() => new Echo()), "echo");
            var remote = seed.ActorSelection(new RootActorPath(((ExtendedActorSystem)worker).Provider.DefaultAddress) / "user" / "echo")
                .ResolveOne(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
            var segment = new WorkerProtocol.RunSegment("bench-run", 1, 1, false);
            for (var i = 0; i < 1000; i++) remote.Ask<WorkerProtocol.SegmentDone>(segment, TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();   // warm-up

            var times = new double[roundTrips];
            var total = Stopwatch.StartNew();
            for (var i = 0; i < roundTrips; i++)
            {
                var clock = Stopwatch.GetTimestamp();
                remote.Ask<WorkerProtocol.SegmentDone>(segment with { Until = i + 1 }, TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
                times[i] = Stopwatch.GetElapsedTime(clock).TotalMicroseconds;
            }
            var perSecond = roundTrips / total.Elapsed.TotalSeconds;
            Array.Sort(times);

            // Rank 0's upload: each 64 KiB chunk acknowledged before the next is sent.
            var chunk = new byte[ArtifactProtocol.ChunkBytes];
            Random.Shared.NextBytes(chunk);
            var chunks = megabytes * 1_000_000 / chunk.Length;
            var upload = Stopwatch.StartNew();
            for (var i = 0; i < chunks; i++)
                remote.Ask<ArtifactProtocol.ChunkAck>(new ArtifactProtocol.FileChunk("bench-run", 0, "checkpoints/x/G.bin", (long)i * chunk.Length, chunk, false), TimeSpan.FromSeconds(30))
                    .GetAwaiter().GetResult();
            var mbps = chunks * (double)chunk.Length / 1e6 / upload.Elapsed.TotalSeconds;
            return new Result(times[roundTrips / 2], times[(int)(roundTrips * 0.99)], perSecond, mbps);
        }
        finally
        {
            seed.Terminate().Wait(TimeSpan.FromSeconds(10));
            worker.Terminate().Wait(TimeSpan.FromSeconds(10));
        }
    }

    // The node's transport settings (Hyperion for the protocol, no write batching, TLS when credentials are given).
    static ActorSystem System(ClusterCredentials? credentials, string name) => ClusterHocon.CreateSystem(name, ConfigurationFactory.ParseString("""
        akka.actor.provider = remote
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
        # Off: terminating the two systems logs their disassociation with a stack trace.
        akka.loglevel = OFF
        akka.stdout-loglevel = OFF
        """), credentials);

    sealed class Echo : ReceiveActor
    {
        public Echo()
        {
            Receive<WorkerProtocol.RunSegment>(s => Sender.Tell(new WorkerProtocol.SegmentDone(s.RunId, s.Formation, 0,
                new StepKey(s.Until - 1, StepPhase.Generator, 0), 64, null, null, 0, 0, false)));
            Receive<ArtifactProtocol.FileChunk>(c => Sender.Tell(new ArtifactProtocol.ChunkAck(c.RunId, c.RelativePath, c.Offset)));
        }
    }
}
