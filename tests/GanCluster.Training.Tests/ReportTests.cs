using System.Globalization;
using System.Text.RegularExpressions;
using GanCluster.Reports;
using SkiaSharp;
using Xunit.Abstractions;

namespace GanCluster.Training.Tests;

/// <summary>A tiny real image run, trained once for the report tests by <c>gancluster train --local</c> as a user runs it.</summary>
public sealed class TinyImageRun : IDisposable
{
    public const int Iterations = 40, LogEvery = 4, SampleEvery = 10;
    readonly TempFolder _dir = new();

    public TinyImageRun()
    {
        var idx = Path.Combine(_dir.Path, "train-images-idx3-ubyte");
        Fixtures.WriteIdx(idx, count: 64, size: 28);
        Output = Path.Combine(_dir.Path, "run");
        var spec = Path.Combine(_dir.Path, "spec.json");
        File.WriteAllText(spec, $$"""
            {"name": "tiny-report", "dataset": {"kind": "mnist", "path": "{{idx}}", "imageSize": 28},
             "model": {"kind": "dcgan", "nz": 8, "ngf": 4, "ndf": 4},
             "training": {"iterations": {{Iterations}}, "batchSize": 8, "logEvery": {{LogEvery}}, "sampleEvery": {{SampleEvery}}},
             "checkpoint": {"every": {{Iterations}}, "keep": 1}, "output": "{{Output}}"}
            """);
        var train = CliProcess.Run(["train", "--local", spec, "--device", "cpu"]);
        Assert.True(train.ExitCode == 0, train.StdErr + train.StdOut);
    }

    public string Output { get; }

    /// <summary>Rows of metrics.csv with a value in <paramref name="column"/>, counted here by the header's names.</summary>
    public int RowsWith(string column)
    {
        var lines = File.ReadAllLines(Path.Combine(Output, "metrics.csv"));
        var at = Array.IndexOf(lines[0].Split(','), column);
        Assert.True(at >= 0, $"metrics.csv has no {column} column: {lines[0]}");
        return lines.Skip(1).Select(l => l.Split(',')).Count(f => at < f.Length && f[at].Length > 0);
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary><c>gancluster report</c> and <c>gancluster plot</c> as a user runs them, the page checked in a real browser.</summary>
public class ReportTests(TinyImageRun run, ITestOutputHelper output) : IClassFixture<TinyImageRun>
{
    static readonly string[] TrainingColumns = ["loss_d", "loss_g", "d_x", "d_g_z", "img_per_s"];

    [BrowserFact]
    public void Report_page_renders_in_headless_chromium_and_shows_the_curves_and_the_sample_grids()
    {
        HeadlessChromium.Require();
        var page = Path.Combine(run.Output, "report.html");
        var report = CliProcess.Run(["report", "--run", run.Output]);
        Assert.True(report.ExitCode == 0, report.StdErr + report.StdOut);
        Assert.Contains($"wrote {page}", report.StdOut);

        // Self-contained: nothing for the browser to fetch (the SVG namespaces are names, not addresses).
        var html = File.ReadAllText(page);
        Assert.DoesNotMatch(new Regex(@"\b(src|href)\s*=\s*[""']?\s*(https?:|//)", RegexOptions.IgnoreCase), html);
        Assert.DoesNotMatch(new Regex(@"url\(\s*[""']?(https?:|//)|@import|<link\b|<script\b", RegexOptions.IgnoreCase), html);

        // The DOM after Chromium parsed it: each training column is a chart curve with one vertex per metrics row.
        var dom = HeadlessChromium.DumpDom(page);
        var rows = TinyImageRun.Iterations / TinyImageRun.LogEvery;
        foreach (var column in TrainingColumns)
        {
            Assert.Equal(rows, run.RowsWith(column));
            var (color, points, figure) = Curve(dom, column);
            Assert.Equal(rows, points);
            var vertices = Regex.Matches(figure, @"<path\b[^>]*>").Select(m => m.Value)
                .Where(p => Attribute(p, "stroke")?.Equals(color, StringComparison.OrdinalIgnoreCase) == true)
                .Select(p => Regex.Matches(Attribute(p, "d") ?? "", "[ML]").Count).DefaultIfEmpty(0).Max();
            Assert.True(vertices == rows, $"{column}: the longest {color} path has {vertices} vertices, expected {rows}");
        }
        Assert.Contains("No quality scores in metrics.csv", dom);

        // Every sample grid (4 of them, newest first), the file's own bytes, scaled up 3× with crisp pixels, captioned with its iteration.
        var expected = Enumerable.Range(1, TinyImageRun.Iterations / TinyImageRun.SampleEvery).Select(i => i * TinyImageRun.SampleEvery).Reverse().ToList();
        var figures = Regex.Matches(dom, @"<figure class=""sample"" data-iteration=""(\d+)"">(.*?)</figure>", RegexOptions.Singleline);
        Assert.Equal(expected, figures.Select(f => int.Parse(f.Groups[1].Value, CultureInfo.InvariantCulture)));
        foreach (Match f in figures)
        {
            var iteration = int.Parse(f.Groups[1].Value, CultureInfo.InvariantCulture);
            var img = Regex.Match(f.Groups[2].Value, @"<img\b[^>]*>").Value;
            var bytes = Convert.FromBase64String(Regex.Match(img, @"src=""data:image/png;base64,([^""]+)""").Groups[1].Value);
            Assert.Equal(File.ReadAllBytes(Path.Combine(run.Output, "samples", $"iter-{iteration:D8}.png")), bytes);
            using var grid = SKBitmap.Decode(bytes);
            Assert.Equal((240, 240), (grid.Width, grid.Height));
            Assert.Equal("720", Attribute(img, "width"));
            Assert.Contains("grid", Attribute(img, "class"));
            Assert.Contains($"iteration {iteration}", f.Groups[2].Value);
        }
        Assert.Matches(@"img\.grid\s*\{[^}]*image-rendering:\s*pixelated", dom);

        // The screenshot: the curves are drawn, in their colours, across the chart area (not only a legend swatch).
        var shot = Path.Combine(AppContext.BaseDirectory, "TestResults", "report-screenshot.png");
        Directory.CreateDirectory(Path.GetDirectoryName(shot)!);
        HeadlessChromium.Screenshot(page, shot, 1280, 2400);
        File.Copy(page, Path.ChangeExtension(shot, ".html"), overwrite: true);   // the page beside it: the run folder is temporary
        output.WriteLine($"report screenshot: {shot}");
        Console.WriteLine($"report screenshot: {shot}");
        using var bitmap = SKBitmap.Decode(shot);
        Assert.Equal((1280, 2400), (bitmap.Width, bitmap.Height));
        foreach (var column in TrainingColumns)
        {
            var (color, _, _) = Curve(dom, column);
            var (count, left, right) = PixelsOf(bitmap, SKColor.Parse(color));
            Assert.True(count >= 40 && right - left >= 300,
                $"{column} ({color}): {count} pixels of its colour from x = {left} to {right} in {shot}; expected a curve across its chart");
        }
    }

    [Fact]
    public void Plot_writes_the_curves_as_one_png()
    {
        var png = Path.Combine(run.Output, "curves-test.png");
        var plot = CliProcess.Run(["plot", "--run", run.Output, "--out", png]);
        Assert.True(plot.ExitCode == 0, plot.StdErr + plot.StdOut);
        using var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        // Three charts (losses, D outputs, img/s; no quality rows in this run), two per row, 600×320 each.
        Assert.Equal((2 * 600, 2 * 320), (bitmap.Width, bitmap.Height));
        Assert.Contains("(1200×640 px): Losses, Discriminator outputs, Throughput", plot.StdOut);
        foreach (var column in TrainingColumns)
        {
            var color = new[] { RunCharts.Losses, RunCharts.Discriminator, RunCharts.Throughput }
                .SelectMany(d => d.Series).Single(s => s.Column == column).Color;
            var (count, left, right) = PixelsOf(bitmap, SKColor.Parse(color));
            Assert.True(count >= 40 && right - left >= 300, $"{column} ({color}): {count} pixels from x = {left} to {right}");
        }
        var painted = bitmap.Pixels.Count(p => p != SKColors.White);
        Assert.True(painted > 10_000, $"the PNG is almost blank: {painted} pixels not white");

        // The default name, beside the run.
        var fallback = CliProcess.Run(["plot", "--run", run.Output]);
        Assert.True(fallback.ExitCode == 0, fallback.StdErr);
        Assert.True(File.Exists(Path.Combine(run.Output, "curves.png")));
    }

    [Fact]
    public void A_folder_that_is_not_a_run_exits_2_and_a_run_without_metrics_or_samples_gets_a_page_that_says_so()
    {
        using var dir = new TempFolder();
        foreach (var command in new[] { "report", "plot" })
        {
            var refused = CliProcess.Run([command, "--run", dir.Path]);
            Assert.Equal(2, refused.ExitCode);
            Assert.Contains($"is not a run folder (it has no spec.json, metrics.csv, samples/ or checkpoints/)", refused.StdErr);
            var missing = CliProcess.Run([command, "--run", Path.Combine(dir.Path, "nope")]);
            Assert.Equal(2, missing.ExitCode);
            Assert.Contains("does not exist", missing.StdErr);
        }
        Assert.Empty(Directory.GetFiles(dir.Path));

        // A run that has only started: its spec, nothing logged or sampled yet.
        File.Copy(Path.Combine(run.Output, "spec.json"), dir.File("spec.json"));
        var report = CliProcess.Run(["report", "--run", dir.Path]);
        Assert.True(report.ExitCode == 0, report.StdErr);
        var html = File.ReadAllText(Path.Combine(dir.Path, "report.html"));
        Assert.Contains("<h1>tiny-report</h1>", html);
        Assert.Contains("No metrics.csv yet", html);
        Assert.Contains("No quality scores in metrics.csv (no metrics yet)", html);
        Assert.Contains("No sample grids yet", html);
        Assert.Contains("no checkpoint yet", html);
        Assert.DoesNotContain("<figure", html);
        var plot = CliProcess.Run(["plot", "--run", dir.Path]);
        Assert.Equal(2, plot.ExitCode);
        Assert.Contains("no metrics.csv yet, nothing to plot", plot.StdErr);

        // A header and nothing else: still a page, and a clear refusal to plot.
        File.WriteAllText(dir.File("metrics.csv"), "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped\n");
        Assert.Equal(0, CliProcess.Run(["report", "--run", dir.Path]).ExitCode);
        Assert.Contains("metrics.csv has no rows yet", File.ReadAllText(Path.Combine(dir.Path, "report.html")));
        Assert.Contains("metrics.csv has no rows yet, nothing to plot", CliProcess.Run(["plot", "--run", dir.Path]).StdErr);
    }

    /// <summary>The colour and point count that the page's chart figure gives for <paramref name="column"/>, and the figure.</summary>
    static (string Color, int Points, string Figure) Curve(string dom, string column)
    {
        foreach (Match m in Regex.Matches(dom, @"<figure class=""chart""[^>]*>.*?</figure>", RegexOptions.Singleline))
        {
            var open = Regex.Match(m.Value, @"^<figure[^>]*>").Value;
            var columns = Attribute(open, "data-columns")!.Split(' ');
            var at = Array.IndexOf(columns, column);
            if (at < 0) continue;
            return (Attribute(open, "data-colors")!.Split(' ')[at], int.Parse(Attribute(open, "data-points")!.Split(' ')[at], CultureInfo.InvariantCulture), m.Value);
        }
        throw new Xunit.Sdk.XunitException($"no chart figure has a {column} curve");
    }

    static string? Attribute(string element, string name) =>
        Regex.Match(element, $@"\s{Regex.Escape(name)}=""([^""]*)""") is { Success: true } m ? m.Groups[1].Value : null;

    /// <summary>How many pixels are within 24 per channel of <paramref name="color"/>, and the x range they span.</summary>
    static (int Count, int Left, int Right) PixelsOf(SKBitmap bitmap, SKColor color)
    {
        var (count, left, right) = (0, int.MaxValue, -1);
        var pixels = bitmap.Pixels;
        for (var y = 0; y < bitmap.Height; y++)
            for (var x = 0; x < bitmap.Width; x++)
            {
                var p = pixels[y * bitmap.Width + x];
                if (Math.Abs(p.Red - color.Red) > 24 || Math.Abs(p.Green - color.Green) > 24 || Math.Abs(p.Blue - color.Blue) > 24) continue;
                count++;
                left = Math.Min(left, x);
                right = Math.Max(right, x);
            }
        return (count, left, right);
    }
}
