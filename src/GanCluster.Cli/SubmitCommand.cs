using System.CommandLine;
using GanCluster.Actors.Security;
using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;

namespace GanCluster.Cli;

/// <summary>
/// The cluster client: <c>gancluster submit spec.json --cluster host:port [--wait]</c>, <c>gancluster status</c> and
/// <c>gancluster cancel [RUN_ID]</c>. Exit codes of a followed run: 0 completed, 1 failed, 3 lost contact, 4 cancelled.
/// </summary>
static class SubmitCommand
{
    /// <summary>Where a default cluster address comes from, so that it need not be typed on every call.</summary>
    public const string ClusterVariable = "GANCLUSTER_CLUSTER";

    internal static Option<string> Cluster() => new("--cluster")
    {
        Description = $"A seed node: host:port[,host:port] (Akka, inside the cluster's network), or https://host:port (its HTTP API, Node:HttpPort; " +
                      $"http://127.0.0.1:port for an insecure seed). Default: ${ClusterVariable}, else \"cluster\" in {CliConfig.FilePath()}",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable(ClusterVariable) ?? "",
    };

    /// <summary>The cluster to talk to: the flag, else $GANCLUSTER_CLUSTER (the option's default), else the config file; null when none says.</summary>
    internal static string? OptionalAddress(ParseResult r, Option<string> cluster) =>
        r.GetValue(cluster) is { Length: > 0 } address ? address : CliConfig.Get("cluster");

    static string Address(ParseResult r, Option<string> cluster) =>
        OptionalAddress(r, cluster)
              ?? throw new UsageException($"which cluster? give --cluster host:port, set {ClusterVariable}=host:port, or write {{\"cluster\": \"host:port\"}} to {CliConfig.FilePath()}");
    internal static Option<int> ConnectTimeout() => new("--connect-timeout") { Description = "Seconds to wait for the cluster to answer", DefaultValueFactory = _ => 10 };
    static Option<int> GiveUpAfter() => new("--give-up-after")
    {
        Description = "With --wait: seconds to keep trying when no seed answers (a seed being restarted or the coordinator moving) before exit 3",
        DefaultValueFactory = _ => 120,
    };

    static TimeSpan Seconds(ParseResult r, Option<int> option, int min)
    {
        var value = r.GetValue(option);
        if (value < min) throw new UsageException($"{option.Name} must be at least {min} (got {value})");
        return TimeSpan.FromSeconds(value);
    }

    public static Command Build()
    {
        var spec = new Argument<string>("spec") { Description = "Run spec (JSON)" };
        var cluster = Cluster();
        var wait = new Option<bool>("--wait") { Description = "Follow the run to its end, printing a line per logging interval" };
        var timeout = ConnectTimeout();
        var giveUp = GiveUpAfter();
        var (credentials, insecure) = (CertsCommand.CredentialsOption(), CertsCommand.InsecureOption());
        var (iterations, output) = (Common.Iterations(), Common.Output());
        var cmd = new Command("submit", "Submit a run spec to a GanCluster cluster") { spec, cluster, wait, timeout, giveUp, credentials, insecure, iterations, output };
        cmd.SetAction(r => Common.Guard(() => Submit(r.GetValue(spec)!, Address(r, cluster), r.GetValue(wait), Seconds(r, timeout, 1), Seconds(r, giveUp, 0),
            () => CertsCommand.ForClient(r.GetValue(credentials), r.GetValue(insecure)), r.GetValue(iterations), r.GetValue(output))));
        return cmd;
    }

    public static Command BuildStatus()
    {
        var cluster = Cluster();
        var timeout = ConnectTimeout();
        var (credentials, insecure) = (CertsCommand.CredentialsOption(), CertsCommand.InsecureOption());
        var cmd = new Command("status", "Print the coordinator's state and the number of registered workers") { cluster, timeout, credentials, insecure };
        cmd.SetAction(r => Common.Guard(() =>
        {
            using var c = ClusterLink.Open(Address(r, cluster), TimeSpan.FromSeconds(r.GetValue(timeout)),
                () => CertsCommand.ForClient(r.GetValue(credentials), r.GetValue(insecure)));
            c.Send(new RunProtocol.GetStatus());
            var s = (RunProtocol.StatusReported)c.First();
            Console.WriteLine($"state {s.State}; workers {s.Workers}; run {s.RunId ?? "-"}; iteration {s.Iteration}" + (s.Total > 0 ? $"/{s.Total}" : "") +
                              (s.LastError is null ? "" : $"; last error: {s.LastError}"));
            foreach (var w in s.Members ?? [])
                Console.WriteLine($"  worker {w.WorkerId} ({w.Device})" + (w.Rank >= 0 ? $": rank {w.Rank} of run {s.RunId}" : ": idle"));
            return 0;
        }));
        return cmd;
    }

    public static Command BuildCancel()
    {
        var runId = new Argument<string?>("run-id") { Description = "The run to cancel (default: the run the cluster is driving)", Arity = ArgumentArity.ZeroOrOne };
        var cluster = Cluster();
        var wait = new Option<bool>("--wait") { Description = "Wait until the run has stopped and its checkpoint is written" };
        var timeout = ConnectTimeout();
        var giveUp = GiveUpAfter();
        var (credentials, insecure) = (CertsCommand.CredentialsOption(), CertsCommand.InsecureOption());
        var cmd = new Command("cancel",
            "Stop a cluster run at its next iteration boundary after writing a checkpoint; submitting the same spec again continues from it")
            { runId, cluster, wait, timeout, giveUp, credentials, insecure };
        cmd.SetAction(r => Common.Guard(() => Cancel(r.GetValue(runId), Address(r, cluster), r.GetValue(wait), Seconds(r, timeout, 1), Seconds(r, giveUp, 0),
            () => CertsCommand.ForClient(r.GetValue(credentials), r.GetValue(insecure)))));
        return cmd;
    }

    static int Cancel(string? runId, string cluster, bool wait, TimeSpan connectTimeout, TimeSpan giveUpAfter, Func<ClusterCredentials?> credentials)
    {
        using var c = ClusterLink.Open(cluster, connectTimeout, credentials);
        if (runId is null)
        {
            c.Send(new RunProtocol.GetStatus());
            var s = (RunProtocol.StatusReported)c.First();
            if (s.RunId is null || s.State is RunState.Idle or RunState.Failed)
                throw new UsageException($"no run is active on the cluster (the coordinator is {s.State}); nothing to cancel");
            runId = s.RunId;
        }
        c.Send(new RunProtocol.CancelRun(runId, $"{Environment.UserName}@{Environment.MachineName}"));
        switch (c.First())
        {
            case RunProtocol.CancelNack nack:
                Console.Error.WriteLine($"error: cannot cancel run {nack.RunId}: {nack.Reason}");
                return 2;
            case RunProtocol.CancelAck ack:
                Console.WriteLine(ack.Message);
                if (!wait) return 0;
                c.Send(new RunProtocol.WatchRun(runId));
                // Completed counts too: the last iteration may have been under way when the cancel came.
                var code = Follow(c, runId, quiet: true, giveUpAfter);
                return code is CancelledExit or 0 ? 0 : code;
            default:
                throw new InvalidOperationException("unexpected answer to CancelRun");
        }
    }

    static int Submit(string specPath, string cluster, bool wait, TimeSpan connectTimeout, TimeSpan giveUpAfter, Func<ClusterCredentials?> credentials,
        int? iterations = null, string? output = null)
    {
        // Validate here first (dataset paths are checked on the workers): a bad spec never leaves this machine.
        if (!File.Exists(specPath)) throw new UsageException($"{specPath} does not exist");
        // A spec must fit one Akka frame with room to spare; refuse a large file here, naming why, without reading it.
        var bytes = new FileInfo(specPath).Length;
        if (bytes > RunSpecValidator.MaxSpecBytes)
            throw new InvalidRunSpecException(specPath, [new SpecError("(spec)", $"is {bytes:N0} bytes; a run spec may be at most {RunSpecValidator.MaxSpecBytes:N0} bytes")]);
        var json = File.ReadAllText(specPath);
        var parsed = RunSpecValidator.Parse(json, specPath, checkPaths: false);
        if (iterations is not null || output is not null)
        {
            // As train --local: the overrides are checked as the file's values are, and the seed gets the spec they make.
            parsed = Common.Override(parsed, iterations, output, specPath, checkPaths: false);
            json = parsed.ToJson();
        }
        // Where a cluster run goes is the seed's to decide (it checks again): a folder under its Node:RunsRoot.
        if (RunFolder.ClusterOutputProblem(parsed.ResolvedOutput) is { } outputProblem)
            throw new InvalidRunSpecException(specPath, [new SpecError("output", outputProblem)]);

        using var c = ClusterLink.Open(cluster, connectTimeout, credentials);
        c.Send(new RunProtocol.SubmitRun(json, wait));
        switch (c.First())
        {
            case RunProtocol.SubmitNack nack:
                Console.Error.WriteLine($"error: the cluster refused the run: {nack.Reason}");
                foreach (var e in nack.Errors) Console.Error.WriteLine($"  - {e}");
                return 2;
            case RunProtocol.SubmitAck a:
                Console.WriteLine($"submitted run {a.RunId} ({parsed.Training.Iterations} iterations) to {a.Workers} worker(s); outputs on the seed under {a.Output}");
                if (!wait) return 0;
                // Ctrl+C stops following, not the run.
                Console.CancelKeyPress += (_, _) =>
                {
                    LiveProgress.Abandon();
                    Console.Error.WriteLine($"\nstopped following; run {a.RunId} goes on. Stop it with: gancluster cancel {a.RunId} --cluster {cluster}");
                };
                // On a terminal, a live progress line under the run's lines; the ETA's first guess needs images per iteration.
                var perIteration = parsed.Training.BatchSize * (parsed.Training.BatchMode == "global" ? 1 : a.Workers);
                return LiveProgress.Run(sinks => Follow(c, a.RunId, quiet: false, giveUpAfter, sinks, perIteration));
            default:
                throw new InvalidOperationException("unexpected answer to SubmitRun");
        }
    }

    /// <summary>
    /// Prints the run's progress until it ends. Asks to follow it again every <see cref="Rewatch"/>: that keeps the
    /// ClusterClient's reply tunnel alive between slow logging intervals, and re-registers this client with a
    /// coordinator that moved to another seed (which may train a few iterations again from its checkpoint). When no seed
    /// answers, it keeps trying for <paramref name="giveUpAfter"/> (a seed being restarted), then fails naming the addresses.
    /// </summary>
    static int Follow(IClusterLink c, string runId, bool quiet, TimeSpan giveUpAfter, LiveProgress.Sinks? sinks = null, int imagesPerIteration = 0)
    {
        var (output, errors) = (sinks?.Out ?? Console.Out, sinks?.Error ?? Console.Error);
        long last = 0;
        var state = RunState.Running;
        var nextWatch = DateTime.UtcNow + Rewatch;
        DateTime? lostSince = null;
        while (true)
        {
            var wait = nextWatch - DateTime.UtcNow;
            var message = wait > TimeSpan.Zero ? c.Next(wait) : null;
            if (DateTime.UtcNow >= nextWatch)
            {
                c.Send(new RunProtocol.WatchRun(runId));
                nextWatch = DateTime.UtcNow + Rewatch;
            }
            if (message is not null and not ClusterConnection.ContactLost) lostSince = null;
            switch (message)
            {
                case RunProtocol.ProgressReported or RunProtocol.RunNoted when quiet:
                    break;
                case RunProtocol.RunNoted n when n.RunId == runId:
                    output.WriteLine(n.Warning ? $"(warning: {n.Text})" : $"({n.Text})");
                    break;
                case RunProtocol.ProgressReported p when p.RunId == runId:
                    if (p.Iteration <= last) output.WriteLine($"(the run went back to a checkpoint before iteration {p.Iteration}; those iterations are trained again)");
                    last = p.Iteration;
                    var row = new MetricsRow(p.Iteration, p.LossD, p.LossG, p.DReal, p.DFake, p.ImagesPerSecond, p.ElapsedSeconds);
                    output.WriteLine(row.ToConsole(p.Total));
                    sinks?.Report?.Invoke(new RunProgress(p.Iteration, p.Total, imagesPerIteration, row));
                    break;
                case RunProtocol.WatchAck a when a.State != state:
                    if (a.State == RunState.Resuming) output.WriteLine($"(the coordinator is resuming run {runId} from its newest checkpoint)");
                    state = a.State;
                    break;
                case RunProtocol.WatchNack n:
                    errors.WriteLine($"error: cannot follow run {runId} any more: {n.Reason}");
                    return 1;
                case ClusterConnection.ContactLost:
                    lostSince ??= DateTime.UtcNow;
                    if (DateTime.UtcNow - lostSince > giveUpAfter)
                    {
                        errors.WriteLine($"error: lost contact with the cluster: no seed answered for {giveUpAfter.TotalSeconds:F0} s (tried {c.Receptionist}). " +
                                         "The run may still be going: check with `gancluster status --cluster HOST:PORT`.");
                        return 3;
                    }
                    output.WriteLine($"(lost contact with the cluster; trying {c.Receptionist} again)");
                    c.Reconnect();
                    nextWatch = DateTime.UtcNow;
                    break;
                case RunProtocol.RunEnded end when end.RunId == runId:
                    output.WriteLine($"run {end.RunId} {end.Outcome.ToString().ToLowerInvariant()}: {end.Message}");
                    return end.Outcome switch { RunOutcome.Completed => 0, RunOutcome.Cancelled => CancelledExit, _ => 1 };
            }
        }
    }

    const int CancelledExit = 4;
    static readonly TimeSpan Rewatch = TimeSpan.FromSeconds(10);
}
