using System.CommandLine;
using System.Globalization;
using GanCluster.Protocol;
using GanCluster.Training.Output;

namespace GanCluster.Cli;

/// <summary><c>gancluster runs</c>: the local runs (a folder's run folders) and, when a cluster is named, the seed's.</summary>
static class RunsCommand
{
    public static Command Build()
    {
        var dir = new Option<string>("--dir") { Description = "Folder whose run folders are listed (default: runs, where runs go by default)", DefaultValueFactory = _ => "runs" };
        var cluster = SubmitCommand.Cluster();
        cluster.Description = "Also list the cluster's runs (a seed: host:port, or https://host:port for its HTTP API); default: $GANCLUSTER_CLUSTER or the config file, else local runs only";
        var timeout = SubmitCommand.ConnectTimeout();
        var (credentials, insecure) = (CertsCommand.CredentialsOption(), CertsCommand.InsecureOption());
        var cmd = new Command("runs", "List runs with their state, progress and best quality score: local ones, and the cluster's when one is named")
            { dir, cluster, timeout, credentials, insecure };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var root = r.GetValue(dir)!;
            var (local, omittedLocal) = RunListing.Scan(root);
            Print($"local ({Path.GetFullPath(root)})", local, omittedLocal);
            if (SubmitCommand.OptionalAddress(r, cluster) is not { } address) return 0;
            Console.WriteLine();
            using var c = ClusterLink.Open(address, TimeSpan.FromSeconds(r.GetValue(timeout)), () => CertsCommand.ForClient(r.GetValue(credentials), r.GetValue(insecure)));
            c.Send(new RunProtocol.ListRuns());
            switch (c.First())
            {
                case RunProtocol.RunsListed listed:
                    Print($"cluster {address} (the seed's runs root)", listed.Runs, listed.Omitted);
                    return 0;
                case RunProtocol.Refused refused:
                    Console.Error.WriteLine($"error: cluster {address} refused to list runs: {refused.Reason} (a seed older than this client?)");
                    return 1;
                case var other:
                    throw new InvalidOperationException($"unexpected answer to ListRuns: {other}");
            }
        }));
        return cmd;
    }

    static void Print(string title, IReadOnlyList<RunSummary> runs, int omitted)
    {
        Console.WriteLine($"{title}: {runs.Count} run(s){(omitted > 0 ? $", {omitted} older not shown" : "")}");
        if (runs.Count == 0) return;
        string[] header = ["NAME", "STATE", "ITERATION", "BEST", "UPDATED", "FOLDER"];
        var rows = runs.Select(run => new[]
        {
            run.Name,
            State(run.State),
            $"{run.Iteration}/{run.Total}",
            run.Best ?? "-",
            run.UpdatedUtc == DateTime.MinValue ? "-" : run.UpdatedUtc.ToLocalTime().ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture),
            run.Output,
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Max(row => row[i].Length))).ToArray();
        foreach (var row in rows.Prepend(header))
            Console.WriteLine("  " + string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))));
    }

    static string State(RunFolderState state) => state switch
    {
        RunFolderState.NotStarted => "not started",
        RunFolderState.Stopped => "stopped",
        RunFolderState.Completed => "completed",
        RunFolderState.Running => "running",
        _ => state.ToString(),
    };
}
