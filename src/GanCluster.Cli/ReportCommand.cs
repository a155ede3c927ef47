using System.CommandLine;
using GanCluster.Reports;
using GanCluster.Training.Output;

namespace GanCluster.Cli;

/// <summary>
/// <c>gancluster report --run DIR [--out FILE]</c>: a self-contained HTML page of a run; <c>gancluster plot --run DIR
/// [--out FILE.png]</c>: its curves as one PNG. Both read the folder only (no libtorch), so they work on a live run.
/// </summary>
static class ReportCommand
{
    public static Command BuildReport()
    {
        var run = new Option<string>("--run") { Description = "The run's output folder", Required = true };
        var outFile = new Option<string?>("--out") { Description = "The HTML file to write (default: DIR/report.html)" };
        var cmd = new Command("report", "Write a self-contained HTML report of a run: curves, quality over time, sample grids") { run, outFile };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var dir = RunFolder(r.GetValue(run)!);
            var path = r.GetValue(outFile) ?? Path.Combine(dir, "report.html");
            if (!path.EndsWith(".html", StringComparison.OrdinalIgnoreCase) && !path.EndsWith(".htm", StringComparison.OrdinalIgnoreCase))
                throw new UsageException($"--out {path}: give an .html file");
            var s = RunReport.Write(dir, path, DateTimeOffset.UtcNow);
            Console.WriteLine($"wrote {s.Path}: {s.MetricsRows} metrics row(s), {s.Charts} chart(s), {s.GridsShown} of {s.GridsTotal} sample file(s)");
            return 0;
        }));
        return cmd;
    }

    public static Command BuildPlot()
    {
        var run = new Option<string>("--run") { Description = "The run's output folder", Required = true };
        var outFile = new Option<string?>("--out") { Description = "The PNG file to write (default: DIR/curves.png)" };
        var cmd = new Command("plot", "Write a run's curves (losses, D outputs, img/s, quality scores) as one PNG") { run, outFile };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var dir = RunFolder(r.GetValue(run)!);
            var path = r.GetValue(outFile) ?? Path.Combine(dir, "curves.png");
            if (!path.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) throw new UsageException($"--out {path}: give a .png file");
            var csv = Path.Combine(dir, "metrics.csv");
            if (!File.Exists(csv)) throw new UsageException($"--run {dir}: no metrics.csv yet, nothing to plot");
            RunMetrics metrics;
            try { metrics = RunMetrics.Read(csv); }
            catch (InvalidDataException e) { throw new UsageException($"--run {dir}: {e.Message}"); }
            var charts = RunCharts.Training(metrics).Concat(RunCharts.QualityCharts(metrics)).ToList();
            if (charts.Count == 0) throw new UsageException($"--run {dir}: metrics.csv has no rows yet, nothing to plot");
            ImageWriter.WriteAtomically(path, RunCharts.Png(charts));
            foreach (var c in charts) c.Dispose();
            var (w, h) = RunCharts.PngSize(charts.Count);
            Console.WriteLine($"wrote {path} ({w}×{h} px): {string.Join(", ", charts.Select(c => c.Definition.Title))}");
            return 0;
        }));
        return cmd;
    }

    static string RunFolder(string dir) =>
        RunReport.NotARun(dir) is { } problem ? throw new UsageException($"--run {problem}") : dir;
}
