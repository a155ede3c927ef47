using System.CommandLine;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;

namespace GanCluster.Cli;

/// <summary><c>gancluster submit spec.json --cluster host:port [--wait]</c> and <c>gancluster status --cluster host:port</c>.</summary>
static class SubmitCommand
{
    static Option<string> Cluster() => new("--cluster") { Description = "A seed node, host:port", Required = true };
    static Option<int> ConnectTimeout() => new("--connect-timeout") { Description = "Seconds to wait for the cluster to answer", DefaultValueFactory = _ => 10 };

    public static Command Build()
    {
        var spec = new Argument<string>("spec") { Description = "Run spec (JSON)" };
        var cluster = Cluster();
        var wait = new Option<bool>("--wait") { Description = "Follow the run to its end, printing a line per logging interval" };
        var timeout = ConnectTimeout();
        var cmd = new Command("submit", "Submit a run spec to a GanCluster cluster") { spec, cluster, wait, timeout };
        cmd.SetAction(r => Common.Guard(() => Submit(r.GetValue(spec)!, r.GetValue(cluster)!, r.GetValue(wait), TimeSpan.FromSeconds(r.GetValue(timeout)))));
        return cmd;
    }

    public static Command BuildStatus()
    {
        var cluster = Cluster();
        var timeout = ConnectTimeout();
        var cmd = new Command("status", "Print the coordinator's state and the number of registered workers") { cluster, timeout };
        cmd.SetAction(r => Common.Guard(() =>
        {
            using var c = new ClusterConnection(r.GetValue(cluster)!, TimeSpan.FromSeconds(r.GetValue(timeout)));
            c.Send(new RunProtocol.GetStatus());
            var s = (RunProtocol.StatusReported)c.First();
            Console.WriteLine($"state {s.State}; workers {s.Workers}; run {s.RunId ?? "-"}; iteration {s.Iteration}" + (s.LastError is null ? "" : $"; last error: {s.LastError}"));
            return 0;
        }));
        return cmd;
    }

    static int Submit(string specPath, string cluster, bool wait, TimeSpan connectTimeout)
    {
        // Validate here first (dataset paths are checked on the workers): a bad spec never leaves this machine.
        if (!File.Exists(specPath)) throw new UsageException($"{specPath} does not exist");
        var json = File.ReadAllText(specPath);
        var parsed = RunSpecValidator.Parse(json, specPath, checkPaths: false);

        using var c = new ClusterConnection(cluster, connectTimeout);
        c.Send(new RunProtocol.SubmitRun(json, wait));
        switch (c.First())
        {
            case RunProtocol.SubmitNack nack:
                Console.Error.WriteLine($"error: the cluster refused the run: {nack.Reason}");
                foreach (var e in nack.Errors) Console.Error.WriteLine($"  - {e}");
                return 2;
            case RunProtocol.SubmitAck ack:
                Console.WriteLine($"submitted run {ack.RunId} ({parsed.Training.Iterations} iterations) to {ack.Workers} worker(s); outputs on the seed under {ack.Output}");
                if (!wait) return 0;
                break;
        }
        while (true)
        {
            switch (c.Next(Timeout.InfiniteTimeSpan))
            {
                case RunProtocol.ProgressReported p:
                    Console.WriteLine(new MetricsRow(p.Iteration, p.LossD, p.LossG, p.DReal, p.DFake, p.ImagesPerSecond, p.ElapsedSeconds).ToConsole(p.Total));
                    break;
                case RunProtocol.RunEnded end:
                    Console.WriteLine($"run {end.RunId} {end.Status}: {end.Message}");
                    return end.Status == "completed" ? 0 : 1;
            }
        }
    }
}
