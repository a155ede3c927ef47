using System.Text.Json;
using GanCluster.Training.Spec;

namespace GanCluster.Training.Output;

/// <summary>
/// The best checkpoint so far of a run with <c>checkpoint.keepBest</c>, recorded in <c>checkpoints/best.json</c> so that
/// pruning spares it across restarts. Image runs rank by Fréchet distance (lower is better); 2-D runs by modes covered,
/// then by the high-quality share (higher is better).
/// </summary>
/// <param name="Metric"><c>fid</c> or <c>modes</c>.</param>
public sealed record BestCheckpoint(long Iteration, string Metric, double? Fid = null, int? Modes = null, double? HighQuality = null)
{
    public const string FileName = "best.json";

    public static string PathIn(string output) => Path.Combine(CheckpointStore.Folder(output), FileName);

    public static BestCheckpoint Of(long iteration, QualityColumns q) =>
        q.Fid is { } fid ? new(iteration, "fid", Fid: fid) : new(iteration, "modes", Modes: q.Modes, HighQuality: q.HighQuality);

    /// <summary>Whether this is better than <paramref name="other"/> (scores of another metric never compare better).</summary>
    public bool BetterThan(BestCheckpoint other) => (Metric, other.Metric) switch
    {
        ("fid", "fid") => Fid < other.Fid,
        ("modes", "modes") => Modes > other.Modes || Modes == other.Modes && HighQuality > other.HighQuality,
        _ => false,
    };

    /// <summary>The recorded best of <paramref name="output"/>, or null (none, or unreadable: then nothing is spared).</summary>
    public static BestCheckpoint? Read(string output)
    {
        var path = PathIn(output);
        try { return File.Exists(path) ? JsonSerializer.Deserialize<BestCheckpoint>(File.ReadAllText(path), RunSpec.Json) : null; }
        catch (Exception e) when (e is JsonException or IOException) { return null; }
    }

    /// <summary>
    /// Records <paramref name="candidate"/> (a score of the checkpoint being saved) when there is no best yet, the best is
    /// from another metric, or the candidate is better. Returns the best after the call.
    /// </summary>
    public static BestCheckpoint Offer(string output, BestCheckpoint candidate)
    {
        var current = Read(output);
        // The current best's folder is not checked here: a local run's last checkpoint may still be being written.
        if (current is not null && current.Iteration != candidate.Iteration && current.Metric == candidate.Metric && !candidate.BetterThan(current))
            return current;
        Directory.CreateDirectory(CheckpointStore.Folder(output));
        var path = PathIn(output);
        var tmp = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(candidate, RunSpec.Json));
        File.Move(tmp, path, overwrite: true);
        return candidate;
    }

    /// <summary>
    /// At a run's start: forgets the best when keepBest is off (pruning then keeps only the newest), or when its folder is
    /// gone (deleted by hand, or a crash before it was written), so that the next scored checkpoint becomes the best.
    /// </summary>
    public static void Reset(string output, bool keepBest)
    {
        if (!keepBest || Read(output) is { } b && !Directory.Exists(CheckpointStore.PathOf(output, b.Iteration))) Clear(output);
    }

    /// <summary>Forgets the best: pruning then keeps only the newest.</summary>
    public static void Clear(string output)
    {
        if (File.Exists(PathIn(output))) File.Delete(PathIn(output));
    }
}
