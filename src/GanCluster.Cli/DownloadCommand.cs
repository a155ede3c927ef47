using System.CommandLine;
using System.Globalization;

namespace GanCluster.Cli;

/// <summary>
/// <c>gancluster download RUN --cluster https://host:port [--out DIR] [--what samples,checkpoints,exports]</c>: a run's
/// files from the seed's HTTP API, where the seed keeps them (the Akka path carries no files).
/// </summary>
static class DownloadCommand
{
    static readonly Dictionary<string, string> Kinds = new()
    {
        ["samples"] = "sample", ["checkpoints"] = "checkpoint", ["exports"] = "export", ["other"] = "other",
    };

    /// <summary>Files at least this big show their progress on a terminal.</summary>
    const long Big = 8L << 20;

    public static Command Build()
    {
        var run = new Argument<string>("run") { Description = "The run: its name, or its folder under the seed's runs root (gancluster runs --cluster URL lists both)" };
        var cluster = SubmitCommand.Cluster();
        cluster.Description = $"The seed's HTTP API: https://host:port (Node:HttpPort), or http://127.0.0.1:port for an insecure seed (default: ${SubmitCommand.ClusterVariable}, else the config file)";
        var output = new Option<string?>("--out") { Description = "Folder to write the run's files to, keeping their paths (default: ./RUN)" };
        var what = new Option<string>("--what") { Description = "Which files: samples, checkpoints, exports, other (spec.json, metrics.csv, ...), comma-separated, or all", DefaultValueFactory = _ => "all" };
        var timeout = SubmitCommand.ConnectTimeout();
        var (credentials, insecure) = (CertsCommand.CredentialsOption(), CertsCommand.InsecureOption());
        var cmd = new Command("download", "Download a cluster run's samples, checkpoints and exports from the seed's HTTP API")
            { run, cluster, output, what, timeout, credentials, insecure };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var address = SubmitCommand.OptionalAddress(r, cluster)
                ?? throw new UsageException("which cluster? download needs --cluster https://HOST:PORT (the seed's HTTP API)");
            if (!ClusterLink.IsHttp(address))
                throw new UsageException($"download needs --cluster https://HOST:PORT (the seed's HTTP API, Node:HttpPort), not {address}: the Akka path does not carry files");
            var kinds = Selected(r.GetValue(what)!);
            var name = r.GetValue(run)!;
            var target = Path.GetFullPath(r.GetValue(output) ?? name.Split('/', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "run");
            using var link = (HttpClusterLink)ClusterLink.Open(address, TimeSpan.FromSeconds(r.GetValue(timeout)),
                () => CertsCommand.ForClient(r.GetValue(credentials), r.GetValue(insecure)));
            var files = link.Files(name).Where(f => kinds.Contains(f.Kind)).ToList();
            if (files.Count == 0)
            {
                Console.WriteLine($"run {name} has no {string.Join(", ", kinds.Select(k => k + "s"))} files on the seed");
                return 0;
            }
            long bytes = 0;
            foreach (var f in files)
            {
                var local = LocalPath(target, f.Path);
                var live = f.Size >= Big && !Console.IsErrorRedirected;
                var shown = -1L;
                link.Download(name, f.Path, local, live ? done =>
                {
                    var percent = f.Size > 0 ? done * 100 / f.Size : 100;
                    if (percent == shown) return;
                    shown = percent;
                    Console.Error.Write($"\r  {f.Path}: {percent}% of {Megabytes(f.Size)}");
                } : null);
                if (live) Console.Error.Write("\r" + new string(' ', f.Path.Length + 24) + "\r");
                bytes += new FileInfo(local).Length;
                Console.WriteLine($"  {f.Path} ({Megabytes(new FileInfo(local).Length)})");
            }
            Console.WriteLine($"downloaded {files.Count} file(s), {Megabytes(bytes)}, of run {name} to {target}");
            return 0;
        }));
        return cmd;
    }

    static HashSet<string> Selected(string what)
    {
        var words = what.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (words.Contains("all")) return [.. Kinds.Values];
        var unknown = words.Where(w => !Kinds.ContainsKey(w)).ToList();
        if (unknown.Count > 0 || words.Length == 0)
            throw new UsageException($"--what {what}: expected samples, checkpoints, exports, other (comma-separated) or all");
        return [.. words.Select(w => Kinds[w])];
    }

    /// <summary>Where a run file goes under <paramref name="target"/>; a path that would leave it is refused (whatever the server says).</summary>
    static string LocalPath(string target, string path)
    {
        var segments = path.Split('/');
        if (segments.Any(s => s is "" or "." or ".." || s.Contains('\\')) || Path.IsPathRooted(path))
            throw new UsageException($"the seed listed a file path that is not a plain relative path: {path}");
        return Path.Combine([target, .. segments]);
    }

    static string Megabytes(long bytes) => bytes < 1 << 20
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:F1} MB");
}
