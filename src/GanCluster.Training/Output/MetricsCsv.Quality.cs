using System.Globalization;

namespace GanCluster.Training.Output;

/// <summary>The quality columns of a metrics.csv row: the image scores, or a 2-D run's mode coverage.</summary>
/// <param name="Fid">Fréchet distance of the classifier's features (see <see cref="Quality.ImageQualityResult"/>).</param>
/// <param name="ClassKl">KL(real ‖ generated) of the predicted-class histograms, nats.</param>
/// <param name="Confident">Share (0–1) of images classified with probability above 0.9.</param>
/// <param name="Modes">Modes covered (ring8: of 8, grid25: of 25).</param>
/// <param name="HighQuality">Share (0–1) of 2-D samples within 3 σ of their nearest mode.</param>
public sealed record QualityColumns(double? Fid = null, double? ClassKl = null, double? Confident = null, int? Modes = null, double? HighQuality = null)
{
    public static QualityColumns Of(Quality.ImageQualityResult q) => new(q.FrechetDistance, q.ClassKl, q.ConfidentFraction);
    public static QualityColumns Of(Core.ModeQualityResult q) => new(Modes: q.ModesCovered, HighQuality: q.HighQualityFraction);

    internal string ToCsv(long iteration, double? elapsed)
    {
        static string F(double? v, string format) => v is { } x ? x.ToString(format, CultureInfo.InvariantCulture) : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"{iteration},,,,,,{F(elapsed, "F2")},,{F(Fid, "G6")},{F(ClassKl, "G6")},{F(Confident, "G6")},{(Modes is { } m ? m.ToString(CultureInfo.InvariantCulture) : "")},{F(HighQuality, "G6")}");
    }
}

/// <summary>
/// One row of metrics.csv as read back by <see cref="MetricsCsv.Read"/>: every column nullable, because interval rows leave
/// the quality columns empty, quality rows leave the training columns empty, and files from before the quality columns
/// have none of them.
/// </summary>
public sealed record MetricsRecord(long Iteration, double? LossD, double? LossG, double? DReal, double? DFake, double? ImagesPerSecond,
    double? ElapsedSeconds, int? Skipped, double? Fid, double? ClassKl, double? Confident, int? Modes, double? HighQuality)
{
    /// <summary>A quality row (written at a save), as opposed to a logging interval's row.</summary>
    public bool IsQuality => LossD is null && (Fid ?? ClassKl ?? Confident ?? HighQuality ?? Modes) is not null;
}

public sealed partial class MetricsCsv
{
    /// <summary>
    /// Reads a metrics.csv written by any version: columns are found by their header name (unknown columns are ignored,
    /// missing ones are null), empty or unparseable cells are null, and lines without an integer iteration (a torn last
    /// line, a blank one) are skipped. Rows come in file order. A file that does not exist gives no rows.
    /// </summary>
    public static IReadOnlyList<MetricsRecord> Read(string path)
    {
        if (!File.Exists(path)) return [];
        using var reader = new StreamReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete));
        var header = reader.ReadLine();
        if (header is null) return [];
        var columns = header.TrimEnd('\r').Split(',').Select((name, i) => (name: name.Trim(), i))
            .GroupBy(c => c.name).ToDictionary(g => g.Key, g => g.First().i, StringComparer.Ordinal);
        var rows = new List<MetricsRecord>();
        while (reader.ReadLine() is { } line)
        {
            var cells = line.TrimEnd('\r').Split(',');
            string? Cell(string name) => columns.TryGetValue(name, out var i) && i < cells.Length && cells[i].Length > 0 ? cells[i] : null;
            double? D(string name) => Cell(name) is { } c && double.TryParse(c, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null;
            int? I(string name) => Cell(name) is { } c && int.TryParse(c, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : null;
            if (Cell("iteration") is not { } it || !long.TryParse(it, NumberStyles.Integer, CultureInfo.InvariantCulture, out var iteration)) continue;
            rows.Add(new MetricsRecord(iteration, D("loss_d"), D("loss_g"), D("d_x"), D("d_g_z"), D("img_per_s"), D("elapsed_s"), I("skipped"),
                D("fid"), D("class_kl"), D("confident"), I("modes"), D("high_quality")));
        }
        return rows;
    }
}
