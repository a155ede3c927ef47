using System.Globalization;

namespace GanCluster.Training.Output;

/// <summary>One logged interval: the columns of metrics.csv and of the console line.</summary>
/// <param name="Skipped">Updates skipped in the window because a loss or gradient was not finite.</param>
public sealed record MetricsRow(long Iteration, double LossD, double LossG, double DReal, double DFake, double ImagesPerSecond, double ElapsedSeconds, int Skipped = 0)
{
    public const string Header = "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped";

    /// <summary>The row of a logging window's means.</summary>
    public static MetricsRow Of(long iteration, Core.StepStats s, double imagesPerSecond, double elapsedSeconds, int skipped) =>
        new(iteration, s.LossD, s.LossG, s.DReal, s.DFake, imagesPerSecond, elapsedSeconds, skipped);

    public string ToCsv() => string.Create(CultureInfo.InvariantCulture,
        $"{Iteration},{LossD:G6},{LossG:G6},{DReal:G6},{DFake:G6},{ImagesPerSecond:F1},{ElapsedSeconds:F2},{Skipped}");

    public string ToConsole(long total) => string.Create(CultureInfo.InvariantCulture,
        $"[{Iteration}/{total}] Loss_D: {LossD:F4} Loss_G: {LossG:F4} D(x): {DReal:F4} D(G(z)): {DFake:F4} img/s: {ImagesPerSecond:F0}{(Skipped > 0 ? $" skipped: {Skipped}" : "")}");
}

/// <summary>Appends rows to metrics.csv, flushed per row so a crash loses at most the row being written.</summary>
public sealed class MetricsCsv : IDisposable
{
    readonly StreamWriter _writer;

    public MetricsCsv(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var exists = File.Exists(path) && new FileInfo(path).Length > 0;
        _writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read));
        if (!exists) _writer.WriteLine(MetricsRow.Header);
        _writer.Flush();
    }

    public void Append(MetricsRow row)
    {
        _writer.WriteLine(row.ToCsv());
        _writer.Flush();
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
