using System.Globalization;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>Samples and checkpoint state of a run, written the same way by a local run and by a cluster's rank 0.</summary>
public static class RunArtifacts
{
    const int ImageSamples = 64, PointSamples = 2500;

    /// <summary>The fixed noise batch of a run: its own generator, so every sample point shows the same z.</summary>
    public static Tensor FixedNoise(GanReplica replica, long seed)
    {
        using var gen = new Generator((ulong)(seed + 7919));   // CPU: see GanReplica.DrawNormal
        return replica.SampleNoise(replica.IsImage ? ImageSamples : PointSamples, gen);
    }

    /// <summary>
    /// Writes samples/iter-N.png (a grid, or a scatter plot plus samples/iter-N.csv for 2-D models) under
    /// <paramref name="folder"/>. Returns the paths relative to it, and mode quality for ring8/grid25.
    /// </summary>
    public static (IReadOnlyList<string> Files, ModeQualityResult? Quality) WriteSamples(GanReplica replica, Tensor fixedNoise, string folder, long iteration)
    {
        using var scope = NewDisposeScope();
        return RenderSamples(replica.Generate(fixedNoise), replica.IsImage, replica.Spec.Dataset.Kind, folder, iteration);
    }

    /// <summary>
    /// Writes G's output <paramref name="fake"/> (a CPU tensor is fine on any thread) as <see cref="WriteSamples"/> does:
    /// what a cluster's rank 0 leaves to its background upload, so that training waits only for G's forward pass.
    /// </summary>
    public static (IReadOnlyList<string> Files, ModeQualityResult? Quality) RenderSamples(Tensor fake, bool isImage, string kind, string folder, long iteration)
    {
        var (files, quality) = EncodeSamples(fake, isImage, kind, iteration);
        foreach (var (rel, bytes) in files) ImageWriter.WriteAtomically(Path.Combine(folder, rel), bytes);
        return (files.Select(f => f.Path).ToList(), quality);
    }

    /// <summary>
    /// The files of <see cref="RenderSamples"/> (relative path, bytes) encoded in memory: what a cluster's rank 0 uploads,
    /// with no detour through the disk.
    /// </summary>
    public static (IReadOnlyList<(string Path, byte[] Bytes)> Files, ModeQualityResult? Quality) EncodeSamples(Tensor fake, bool isImage, string kind, long iteration)
    {
        var name = $"samples/{CheckpointStore.Prefix}{iteration.ToString("D8", CultureInfo.InvariantCulture)}";
        if (isImage) return ([(name + ".png", ImageWriter.EncodeGrid(fake))], null);
        var xy = fake.cpu().contiguous().data<float>().ToArray();
        var mixture = RunData.Mixture(kind);
        return ([(name + ".png", EncodeScatter(xy, kind)), (name + ".csv", SampleCsv.Encode(xy))], mixture is { } m ? ModeQuality.Evaluate(xy, m.Modes, m.Std) : null);
    }

    /// <summary>2-D samples as a PNG scatter over the dataset's extent, its modes marked.</summary>
    public static byte[] EncodeScatter(float[] xy, string kind) =>
        ImageWriter.EncodeScatter(xy, kind == "grid25" ? 5.5f : 1.6f, RunData.Mixture(kind)?.Modes);

    /// <summary>Saves a checkpoint of <paramref name="replica"/> at <paramref name="iteration"/> under <paramref name="output"/>.</summary>
    public static string SaveCheckpoint(string output, GanReplica replica, long iteration, BatchCursor cursor, int keep) =>
        CheckpointStore.Save(output, replica, StateOf(replica, iteration, cursor), keep);

    /// <summary>What a checkpoint at <paramref name="iteration"/> records besides the tensors.</summary>
    public static CheckpointState StateOf(GanReplica replica, long iteration, BatchCursor cursor) => new()
    {
        Iteration = iteration,
        Spec = replica.Spec,
        DataEpoch = cursor.Epoch,
        DataOffset = cursor.Offset,
        NoiseState = CheckpointStore.NoiseStateOf(replica),
        SavedAt = DateTimeOffset.UtcNow,
    };
}

/// <summary>2-D samples as CSV: a header <c>x,y</c>, then one point per row.</summary>
public static class SampleCsv
{
    public static void Write(string path, ReadOnlySpan<float> xy) => ImageWriter.WriteAtomically(path, Encode(xy));

    /// <summary>The CSV's bytes (UTF-8, LF line ends).</summary>
    public static byte[] Encode(ReadOnlySpan<float> xy)
    {
        var text = new System.Text.StringBuilder("x,y\n", 16 + xy.Length * 12);
        for (var i = 0; i + 1 < xy.Length; i += 2)
            text.Append(CultureInfo.InvariantCulture, $"{xy[i]:G7},{xy[i + 1]:G7}").Append('\n');
        return System.Text.Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>The points of a file <see cref="Write"/> wrote, as x0, y0, x1, y1, ...</summary>
    public static float[] Read(string path) =>
        File.ReadLines(path).Skip(1).Where(l => l.Length > 0)
            .SelectMany(l => l.Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture))).ToArray();

    /// <summary>Mode quality of a samples CSV of a ring8/grid25 run (null for other datasets).</summary>
    public static ModeQualityResult? Quality(string path, string datasetKind) =>
        RunData.Mixture(datasetKind) is { } m ? ModeQuality.Evaluate(Read(path), m.Modes, m.Std) : null;
}
