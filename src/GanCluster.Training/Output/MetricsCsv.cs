using System.Globalization;

namespace GanCluster.Training.Output;

/// <summary>One logged interval: the columns of metrics.csv and of the console line.</summary>
/// <param name="Skipped">Updates skipped in the window because a loss or gradient was not finite.</param>
public sealed record MetricsRow(long Iteration, double LossD, double LossG, double DReal, double DFake, double ImagesPerSecond, double ElapsedSeconds, int Skipped = 0)
{
    public const string Header = "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped,fid,class_kl,confident,modes,high_quality";
    /// <summary>The header before quality columns: a file that starts with it is upgraded to <see cref="Header"/> when opened.</summary>
    public const string HeaderV1 = "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped";
    /// <summary>The quality columns an interval row leaves empty.</summary>
    internal const string EmptyQuality = ",,,,,";

    /// <summary>The row of a logging window's means.</summary>
    public static MetricsRow Of(long iteration, Core.StepStats s, double imagesPerSecond, double elapsedSeconds, int skipped) =>
        new(iteration, s.LossD, s.LossG, s.DReal, s.DFake, imagesPerSecond, elapsedSeconds, skipped);

    public string ToCsv() => string.Create(CultureInfo.InvariantCulture,
        $"{Iteration},{LossD:G6},{LossG:G6},{DReal:G6},{DFake:G6},{ImagesPerSecond:F1},{ElapsedSeconds:F2},{Skipped}{EmptyQuality}");

    public string ToConsole(long total) => string.Create(CultureInfo.InvariantCulture,
        $"[{Iteration}/{total}] Loss_D: {LossD:F4} Loss_G: {LossG:F4} D(x): {DReal:F4} D(G(z)): {DFake:F4} img/s: {ImagesPerSecond:F0}{(Skipped > 0 ? $" skipped: {Skipped}" : "")}");
}

/// <summary>Appends rows to metrics.csv, flushed per row so a crash loses at most the row being written.</summary>
public sealed partial class MetricsCsv : IDisposable
{
    readonly StreamWriter _writer;

    public MetricsCsv(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var exists = File.Exists(path) && new FileInfo(path).Length > 0;
        if (exists) UpgradeHeader(path);
        _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read));
        if (!exists) _writer.WriteLine(MetricsRow.Header);
        _writer.Flush();
    }

    public void Append(MetricsRow row)
    {
        _writer.WriteLine(row.ToCsv());
        _writer.Flush();
    }

    /// <summary>
    /// A quality row at a save: <paramref name="iteration"/>, <paramref name="elapsedSeconds"/> (empty when unknown) and
    /// the quality columns of <paramref name="quality"/> (fid, class_kl, confident for images; modes, high_quality for 2-D
    /// runs); every other column empty.
    /// </summary>
    public void AppendQuality(long iteration, double? elapsedSeconds, QualityColumns quality)
    {
        _writer.WriteLine(quality.ToCsv(iteration, elapsedSeconds));
        _writer.Flush();
    }

    /// <summary>
    /// Rewrites a file whose first line is the 8-column <see cref="MetricsRow.HeaderV1"/> with the current header (the
    /// rows stay as they are: readers take missing columns as empty). Through a temporary file and a rename.
    /// </summary>
    public static void UpgradeHeader(string path)
    {
        string first;
        using (var reader = new StreamReader(path)) first = reader.ReadLine() ?? "";
        if (first.TrimEnd('\r') != MetricsRow.HeaderV1) return;
        var lines = File.ReadAllLines(path);
        lines[0] = MetricsRow.Header;
        var tmp = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllLines(tmp, lines);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>On resume, rows past <paramref name="upTo"/> are dropped: those iterations are trained again.</summary>
    public static void Trim(string path, long upTo)
    {
        if (!File.Exists(path)) return;
        var lines = File.ReadAllLines(path);
        var kept = lines.Where((l, i) => i == 0 || long.TryParse(l.Split(',')[0], CultureInfo.InvariantCulture, out var it) && it <= upTo).ToArray();
        File.WriteAllLines(path, kept);
    }

    public void Dispose() => _writer.Dispose();
}
