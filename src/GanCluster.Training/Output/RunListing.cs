using System.Globalization;
using GanCluster.Protocol;
using GanCluster.Training.Spec;

namespace GanCluster.Training.Output;

/// <summary>
/// The runs under a folder (a local <c>runs/</c>, or a seed's runs root): every sub-folder with a spec.json, to a
/// bounded depth, summarised from its files alone: spec, newest checkpoint, metrics.csv and its lock.
/// </summary>
public static class RunListing
{
    /// <summary>metrics.csv is read for the best score up to this size (past it, the checkpoints alone tell how far the run got).</summary>
    const long MaxMetricsBytes = 64L << 20;

    /// <param name="root">The folder to search (run folders at most <paramref name="depth"/> levels below it).</param>
    /// <param name="active">A folder known to be running (the cluster's active run), besides those whose lock is held.</param>
    /// <param name="max">At most this many runs, the most recently updated; the rest are counted in Omitted.</param>
    public static (RunSummary[] Runs, int Omitted) Scan(string root, string? active = null, int max = 200, int depth = 3)
    {
        var folders = Folders(root, depth);
        var activeFull = active is null ? null : Path.GetFullPath(active);
        var runs = folders.Select(f => Summarise(f, string.Equals(f, activeFull, StringComparison.Ordinal)))
            .OfType<RunSummary>()
            .OrderByDescending(r => r.UpdatedUtc)
            .ToList();
        return (runs.Take(max).ToArray(), Math.Max(0, runs.Count - max));
    }

    static readonly HashSet<string> RunOutputs = ["checkpoints", "samples", "tensorboard"];

    /// <summary>
    /// Every run folder (one with a spec.json) under <paramref name="root"/>, at most <paramref name="depth"/> levels down.
    /// Runs may nest (a run folder inside another's), but a run's own outputs are not runs. Hidden folders and symbolic
    /// links are not entered: a link could loop (a run listed twice) or lead out of the root.
    /// </summary>
    public static List<string> Folders(string root, int depth = 3)
    {
        var found = new List<string>();
        Find(Path.GetFullPath(root), depth, found);
        return found;
    }

    static void Find(string dir, int depth, List<string> found)
    {
        if (!Directory.Exists(dir)) return;
        var isRun = File.Exists(Path.Combine(dir, RunFolder.SpecFile));
        if (isRun) found.Add(dir);
        if (depth == 0) return;
        List<DirectoryInfo> subdirs;
        try { subdirs = new DirectoryInfo(dir).EnumerateDirectories().Where(d => d.LinkTarget is null && !d.Name.StartsWith('.') && !(isRun && RunOutputs.Contains(d.Name))).ToList(); }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException) { return; }
        foreach (var d in subdirs) Find(d.FullName, depth - 1, found);
    }

    /// <summary>The summary of one run folder, or null when its spec.json is not a run spec.</summary>
    public static RunSummary? Summarise(string output, bool active = false)
    {
        RunSpec spec;
        try
        {
            spec = RunSpecValidator.Parse(File.ReadAllText(Path.Combine(output, "spec.json")), Path.Combine(output, "spec.json"), checkPaths: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidRunSpecException or ArgumentException)
        {
            return null;
        }
        var checkpoint = CheckpointStore.List(output).Select(IterationOf).FirstOrDefault(i => i >= 0, -1);
        var metrics = Path.Combine(output, "metrics.csv");
        var (lastRow, best) = ReadMetrics(metrics);
        var iteration = Math.Max(Math.Max(checkpoint, lastRow), 0);
        var total = spec.Training.Iterations;
        var state = active || RunLock.IsHeld(output) ? RunFolderState.Running
            : iteration >= total ? RunFolderState.Completed   // its last checkpoint, or its last logged row, is at the end
            : checkpoint < 0 && lastRow <= 0 ? RunFolderState.NotStarted
            : RunFolderState.Stopped;
        var updated = new[] { Path.Combine(output, "spec.json"), metrics, CheckpointStore.Folder(output) }
            .Select(p => File.Exists(p) ? File.GetLastWriteTimeUtc(p) : Directory.Exists(p) ? Directory.GetLastWriteTimeUtc(p) : DateTime.MinValue)
            .Max();
        return new RunSummary(spec.Name, output, state, iteration, total, best, updated);
    }

    static long IterationOf(string checkpointDir) =>
        long.TryParse(Path.GetFileName(checkpointDir).AsSpan(CheckpointStore.Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : -1;

    /// <summary>The last row's iteration and the best quality score in metrics.csv (<see cref="MetricsCsv.Read"/>: any version of it).</summary>
    static (long LastIteration, string? Best) ReadMetrics(string path)
    {
        try
        {
            // A file past the bound (a very long run) is not read: the checkpoints alone tell how far the run got.
            if (!File.Exists(path) || new FileInfo(path).Length > MaxMetricsBytes) return (0, null);
            var rows = MetricsCsv.Read(path);
            var last = rows.Count == 0 ? 0 : rows.Max(r => r.Iteration);
            // Images: the lowest Fréchet distance; 2-D data: the most modes, then the highest high-quality share.
            var bestFid = rows.Where(r => r.Fid is { } f && double.IsFinite(f)).MinBy(r => r.Fid);
            var bestModes = rows.Where(r => r.Modes is not null && r.HighQuality is not null).MaxBy(r => (r.Modes!.Value, r.HighQuality!.Value));
            var best = bestFid is { } bf ? string.Create(CultureInfo.InvariantCulture, $"FD {bf.Fid:F2} at {bf.Iteration}")
                : bestModes is { } bm ? string.Create(CultureInfo.InvariantCulture, $"modes {bm.Modes}, high-quality {bm.HighQuality:P1} at {bm.Iteration}")
                : null;
            return (last, best);
        }
        catch (IOException)
        {
            return (0, null);
        }
    }
}
