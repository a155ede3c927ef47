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
        var folders = new List<string>();
        Find(Path.GetFullPath(root), depth, folders);
        var activeFull = active is null ? null : Path.GetFullPath(active);
        var runs = folders.Select(f => Summarise(f, string.Equals(f, activeFull, StringComparison.Ordinal)))
            .OfType<RunSummary>()
            .OrderByDescending(r => r.UpdatedUtc)
            .ToList();
        return (runs.Take(max).ToArray(), Math.Max(0, runs.Count - max));
    }

    static readonly HashSet<string> RunOutputs = ["checkpoints", "samples", "tensorboard"];

    static void Find(string dir, int depth, List<string> found)
    {
        if (!Directory.Exists(dir)) return;
        var isRun = File.Exists(Path.Combine(dir, "spec.json"));
        if (isRun) found.Add(dir);
        if (depth == 0) return;
        IEnumerable<string> subdirs;
        // Runs may nest (a run folder inside another's), but a run's own outputs are not runs.
        try { subdirs = Directory.EnumerateDirectories(dir).Where(d => !Path.GetFileName(d).StartsWith('.') && !(isRun && RunOutputs.Contains(Path.GetFileName(d)))).ToList(); }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException) { return; }
        foreach (var d in subdirs) Find(d, depth - 1, found);
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

    /// <summary>The last row's iteration and the best quality score in metrics.csv (columns found by their header names).</summary>
    static (long LastIteration, string? Best) ReadMetrics(string path)
    {
        if (!File.Exists(path)) return (0, null);
        try
        {
            // Shared: a run being trained appends to it. A file past the bound (a very long run) is not read for the best score.
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            if (fs.Length > MaxMetricsBytes) return (0, null);
            using var reader = new StreamReader(fs);
            var header = reader.ReadLine()?.Split(',') ?? [];
            int Col(string name) => Array.IndexOf(header, name);
            var (fid, modes, high) = (Col("fid"), Col("modes"), Col("high_quality"));
            long last = 0;
            (double Fid, long At)? bestFid = null;
            (double Modes, double High, long At)? bestModes = null;
            for (var line = reader.ReadLine(); line is not null; line = reader.ReadLine())
            {
                var cells = line.Split(',');
                if (!long.TryParse(cells[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var it)) continue;
                last = Math.Max(last, it);
                if (Number(cells, fid) is { } f && (bestFid is null || f < bestFid.Value.Fid)) bestFid = (f, it);
                if (Number(cells, modes) is { } m && Number(cells, high) is { } h && (bestModes is null || (m, h).CompareTo((bestModes.Value.Modes, bestModes.Value.High)) > 0))
                    bestModes = (m, h, it);
            }
            var best = bestFid is { } bf ? string.Create(CultureInfo.InvariantCulture, $"FD {bf.Fid:G4} at {bf.At}")
                : bestModes is { } bm ? string.Create(CultureInfo.InvariantCulture, $"modes {bm.Modes:G4}, high-quality {bm.High:G4} at {bm.At}")
                : null;
            return (last, best);
        }
        catch (IOException)
        {
            return (0, null);
        }
    }

    static double? Number(string[] cells, int column) =>
        column >= 0 && column < cells.Length && double.TryParse(cells[column], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : null;
}
