using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;

namespace GanCluster.Reports;

/// <summary>A sample file of a run: samples/iter-NNNNNNNN.png (a grid, or a 2-D scatter beside its .csv).</summary>
public sealed record SampleFile(long Iteration, string Path);

/// <summary>What <see cref="RunReport.Write"/> wrote.</summary>
public sealed record ReportSummary(string Path, int Charts, int GridsShown, int GridsTotal, int MetricsRows);

/// <summary>
/// <c>gancluster report</c>: one self-contained HTML page for a run folder (inline CSS, the charts as inline SVG, the
/// sample grids as base64 PNG; no external reference, so it opens offline and can be mailed). Each part the folder
/// lacks so far (spec.json, metrics.csv, quality rows, samples) becomes a section that says so.
/// </summary>
public static class RunReport
{
    /// <summary>Sample grids shown at most, evenly spaced, besides the last.</summary>
    public const int MaxGrids = 12;

    /// <summary>Displayed width that image grids are scaled towards, by a whole factor (crisp pixels).</summary>
    const int GridTargetWidth = 800;

    /// <summary>Why <paramref name="dir"/> is not a run folder (null: it is one).</summary>
    public static string? NotARun(string dir)
    {
        if (File.Exists(dir)) return $"{dir} is a file; give the run's output folder";
        if (!Directory.Exists(dir)) return $"{dir} does not exist";
        var marks = new[] { RunFolder.SpecFile, "metrics.csv" }.Any(f => File.Exists(Path.Combine(dir, f)))
            || new[] { "samples", "checkpoints" }.Any(d => Directory.Exists(Path.Combine(dir, d)));
        return marks ? null : $"{dir} is not a run folder (it has no {RunFolder.SpecFile}, metrics.csv, samples/ or checkpoints/)";
    }

    /// <summary>The sample PNGs of a run, by iteration.</summary>
    public static IReadOnlyList<SampleFile> Samples(string dir)
    {
        var folder = Path.Combine(dir, "samples");
        if (!Directory.Exists(folder)) return [];
        var list = new List<SampleFile>();
        foreach (var path in Directory.GetFiles(folder, CheckpointStore.Prefix + "*.png"))
        {
            var digits = Path.GetFileNameWithoutExtension(path)[CheckpointStore.Prefix.Length..];
            if (long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var iteration)) list.Add(new(iteration, path));
        }
        return list.OrderBy(s => s.Iteration).ToList();
    }

    /// <summary>At most <see cref="MaxGrids"/> evenly spaced from the first, plus the last: every one when they are few.</summary>
    public static IReadOnlyList<T> Pick<T>(IReadOnlyList<T> all)
    {
        if (all.Count <= MaxGrids + 1) return all;
        var picked = Enumerable.Range(0, MaxGrids).Select(i => (int)((long)i * (all.Count - 1) / MaxGrids)).Append(all.Count - 1);
        return picked.Distinct().Select(i => all[i]).ToList();
    }

    /// <summary>Writes the report of <paramref name="dir"/> to <paramref name="outFile"/> (through a temporary file and a rename).</summary>
    public static ReportSummary Write(string dir, string outFile, DateTimeOffset now)
    {
        var (html, summary) = Render(dir, now);
        ImageWriter.WriteAtomically(outFile, Encoding.UTF8.GetBytes(html));
        return summary with { Path = outFile };
    }

    /// <summary>The page's HTML and what it holds.</summary>
    public static (string Html, ReportSummary Summary) Render(string dir, DateTimeOffset now)
    {
        var (spec, specProblem) = ReadSpec(dir);
        var metricsPath = Path.Combine(dir, "metrics.csv");
        RunMetrics? metrics = null;
        string? metricsProblem = null;
        if (!File.Exists(metricsPath)) metricsProblem = "No metrics.csv yet: the trainer writes its first row after training.logEvery iterations"
            + (spec is null ? "." : $" ({spec.Training.LogEvery} for this run).");
        else
        {
            try { metrics = RunMetrics.Read(metricsPath); }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException) { metricsProblem = $"metrics.csv cannot be read: {e.Message}"; }
            if (metrics is { Rows: 0 }) metricsProblem = "metrics.csv has no rows yet: the trainer writes its first row after training.logEvery iterations.";
        }

        var name = spec?.Name ?? Path.GetFileName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar));
        var html = new StringBuilder();
        html.Append($"""
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{E(name)}: GanCluster run report</title>
            <style>{Css}</style>
            </head>
            <body>
            <header><h1>{E(name)}</h1><p class="meta">Run folder <code>{E(Path.GetFullPath(dir))}</code>, report written {E(now.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture))} by <code>gancluster report</code>.</p></header>

            """);

        // The run: spec summary and where it stands.
        html.Append("<section id=\"run\"><h2>Run</h2>\n");
        if (spec is null) html.Append($"<p class=\"missing\">{E(specProblem!)}</p>\n");
        else html.Append(SpecTable(spec));
        html.Append(Progress(dir, spec, metrics));
        html.Append("</section>\n");

        // Training curves.
        var charts = 0;
        html.Append("<section id=\"curves\"><h2>Training curves</h2>\n");
        if (metricsProblem is not null) html.Append($"<p class=\"missing\">{E(metricsProblem)}</p>\n");
        else
        {
            var training = RunCharts.Training(metrics!);
            if (training.Count == 0) html.Append("<p class=\"missing\">metrics.csv has no loss, D output or img/s values yet.</p>\n");
            html.Append("<div class=\"charts\">\n");
            foreach (var c in training) html.Append(Figure(c));
            html.Append("</div>\n");
            charts += training.Count;
            if (metrics!.BadLines > 0) html.Append($"<p class=\"note\">{metrics.BadLines} line(s) of metrics.csv had no readable iteration and were skipped (a row being written).</p>\n");
            if (metrics.UnknownColumns.Count > 0) html.Append($"<p class=\"note\">Columns not charted: {E(string.Join(", ", metrics.UnknownColumns))}.</p>\n");
        }
        html.Append("</section>\n");

        // Quality over time, from the quality rows.
        html.Append("<section id=\"quality\"><h2>Quality over time</h2>\n");
        var quality = metrics is null ? [] : RunCharts.QualityCharts(metrics);
        if (quality.Count == 0)
            html.Append("<p class=\"missing\">No quality scores in metrics.csv" + (metricsProblem is null ? "" : " (no metrics yet)")
                + ": they are the fid, class_kl and confident columns for image runs, modes and high_quality for 2-D runs.</p>\n");
        else
        {
            html.Append("<div class=\"charts\">\n");
            foreach (var c in quality) html.Append(Figure(c));
            html.Append("</div>\n");
            charts += quality.Count;
        }
        html.Append("</section>\n");

        // Sample grids over time.
        var samples = Samples(dir);
        var shown = Pick(samples);
        html.Append("<section id=\"samples\"><h2>Samples over time</h2>\n");
        if (samples.Count == 0)
            html.Append("<p class=\"missing\">No sample grids yet: the trainer writes samples/iter-N.png every training.sampleEvery iterations (or at each checkpoint).</p>\n");
        else
        {
            html.Append(shown.Count < samples.Count
                ? $"<p class=\"note\">Showing {shown.Count} of {samples.Count} sample files, newest first: the last, and {MaxGrids} evenly spaced from the first. The same noise vectors at every iteration.</p>\n"
                : $"<p class=\"note\">All {samples.Count} sample file(s), newest first. The same noise vectors at every iteration.</p>\n");
            var points = spec?.Dataset.IsSynthetic ?? samples.Any(s => File.Exists(Path.ChangeExtension(s.Path, ".csv")));
            // Newest first: what a reader looks for on opening the page; the curves above already show the history.
            foreach (var s in shown.Reverse()) html.Append(SampleFigure(s, spec, metrics, points));
        }
        html.Append("</section>\n");
        html.Append("</body>\n</html>\n");
        return (html.ToString(), new ReportSummary("", charts, shown.Count, samples.Count, metrics?.Rows ?? 0));
    }

    static (RunSpec? Spec, string? Problem) ReadSpec(string dir)
    {
        var path = Path.Combine(dir, RunFolder.SpecFile);
        if (!File.Exists(path)) return (null, $"No {RunFolder.SpecFile} in this folder: the run's settings are unknown.");
        try
        {
            return JsonSerializer.Deserialize<RunSpec>(File.ReadAllText(path), RunSpec.Json) is { } spec
                ? (spec, null) : (null, $"{RunFolder.SpecFile} is empty.");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return (null, $"{RunFolder.SpecFile} cannot be read: {e.Message}");
        }
    }

    static string SpecTable(RunSpec spec)
    {
        var d = spec.Dataset;
        var m = spec.Model;
        var t = spec.Training;
        var dataset = d.IsSynthetic ? $"{d.Kind}, {d.Size:N0} points" : $"{d.Kind} {d.Path}, {d.ImageSize}×{d.ImageSize}, {d.ResolvedChannels} channel(s)";
        var rows = new (string, string)[]
        {
            ("dataset", dataset),
            ("model", $"{m.Kind}, nz {m.ResolvedNz}, ngf {m.ResolvedNgf}, ndf {m.ResolvedNdf}"),
            ("training", string.Create(CultureInfo.InvariantCulture, $"{t.Iterations:N0} iterations, batch {t.BatchSize}, k {t.K}, {t.Loss} loss, seed {t.Seed}")),
            ("optimizers", string.Create(CultureInfo.InvariantCulture, $"D {t.OptimizerD} lr {t.LrD:G4}, G {t.OptimizerG} lr {t.LrG:G4}, lr decay {t.LrDecay}")),
            ("precision", $"{t.Precision}, {t.MemoryFormat}"),
            ("cadence", $"a metrics row every {t.LogEvery}, samples every {(t.SampleEvery > 0 ? t.SampleEvery : spec.Checkpoint.Every)}, a checkpoint every {spec.Checkpoint.Every} (keep {spec.Checkpoint.Keep})"),
        };
        var html = new StringBuilder("<table class=\"spec\">\n");
        foreach (var (k, v) in rows) html.Append($"<tr><th>{E(k)}</th><td>{E(v)}</td></tr>\n");
        html.Append("</table>\n<details><summary>spec.json</summary><pre>").Append(E(spec.ToJson())).Append("</pre></details>\n");
        return html.ToString();
    }

    static string Progress(string dir, RunSpec? spec, RunMetrics? metrics)
    {
        var parts = new List<string>();
        if (metrics?.LastIteration is { } last)
        {
            var of = spec is null ? "" : string.Create(CultureInfo.InvariantCulture, $" of {spec.Training.Iterations:N0} ({100.0 * last / Math.Max(1, spec.Training.Iterations):F0} %)");
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"logged up to iteration {last:N0}{of}"));
            if (metrics.Series("elapsed_s") is { Count: > 0 } elapsed) parts.Add($"{Duration(elapsed[^1].Value)} of training");
            if (metrics.Series("loss_d") is { Count: > 0 } ld && metrics.Series("loss_g") is { Count: > 0 } lg)
                parts.Add($"last loss_d {RunCharts.Number(ld[^1].Value)}, loss_g {RunCharts.Number(lg[^1].Value)}");
            if (metrics.Series("img_per_s") is { Count: > 0 } speed) parts.Add($"{RunCharts.Number(speed[^1].Value)} img/s");
            var skipped = metrics.Series("skipped").Sum(s => s.Value);
            if (skipped > 0) parts.Add($"{skipped:F0} update(s) skipped for non-finite values");
        }
        var checkpoints = CheckpointStore.List(dir);
        parts.Add(checkpoints.Count == 0 ? "no checkpoint yet" : $"{checkpoints.Count} checkpoint(s), the newest {Path.GetFileName(checkpoints[0])}");
        return $"<p class=\"progress\">{E(string.Join("; ", parts))}.</p>\n";
    }

    static string Duration(double seconds) =>
        TimeSpan.FromSeconds(seconds) is var t && t.TotalHours >= 1 ? $"{(int)t.TotalHours} h {t.Minutes} min"
        : t.TotalMinutes >= 1 ? $"{t.Minutes} min {t.Seconds} s" : $"{seconds:F1} s";

    /// <summary>A chart as a figure (the chart is disposed); its data attributes name the curves, their colours and point counts (what a test checks).</summary>
    static string Figure(RunChart chart)
    {
        using var _ = chart;
        var d = chart.Definition;
        var columns = string.Join(' ', chart.Drawn.Select(s => s.Series.Column));
        var colors = string.Join(' ', chart.Drawn.Select(s => s.Series.Color));
        var points = string.Join(' ', chart.Drawn.Select(s => s.Points.ToString(CultureInfo.InvariantCulture)));
        return $"<figure class=\"chart\" id=\"chart-{d.Id}\" data-columns=\"{columns}\" data-colors=\"{colors}\" data-points=\"{points}\">\n"
            + RunCharts.Svg(chart) + "\n"
            + $"<figcaption>{E(d.Title)}: {E(string.Join(", ", chart.Drawn.Select(s => $"{s.Series.Label} ({s.Points} points)")))}</figcaption>\n</figure>\n";
    }

    static string SampleFigure(SampleFile sample, RunSpec? spec, RunMetrics? metrics, bool points)
    {
        var caption = new List<string> { string.Create(CultureInfo.InvariantCulture, $"iteration {sample.Iteration:N0}") };
        caption.AddRange(QualityAt(sample, spec, metrics, points));
        byte[] bytes;
        try { bytes = File.ReadAllBytes(sample.Path); }
        catch (IOException e) { return $"<figure class=\"sample\"><p class=\"missing\">{E(Path.GetFileName(sample.Path))} cannot be read: {E(e.Message)}</p></figure>\n"; }
        if (PngSize(bytes) is not var (width, height))
            return $"<figure class=\"sample\"><p class=\"missing\">{E(Path.GetFileName(sample.Path))} is not a PNG</p><figcaption>{E(string.Join(" · ", caption))}</figcaption></figure>\n";
        // Grids of small images scale up by a whole factor with crisp pixels; a scatter plot is drawn at its size.
        var scale = points ? 1 : Math.Max(1, (int)Math.Round((double)GridTargetWidth / width));
        var alt = $"samples at iteration {sample.Iteration}";
        return $"<figure class=\"sample\" data-iteration=\"{sample.Iteration}\">"
            + $"<img class=\"{(points ? "scatter" : "grid")}\" src=\"data:image/png;base64,{Convert.ToBase64String(bytes)}\" width=\"{width * scale}\" height=\"{height * scale}\" alt=\"{E(alt)}\">"
            + $"<figcaption>{E(string.Join(" · ", caption))} <span class=\"file\">{E(Path.GetFileName(sample.Path))}, {width}×{height} px shown at {scale}×</span></figcaption></figure>\n";
    }

    /// <summary>The scores of a sample's iteration: its quality row; for 2-D runs without one, the mode score of its CSV.</summary>
    static IEnumerable<string> QualityAt(SampleFile sample, RunSpec? spec, RunMetrics? metrics, bool points)
    {
        var it = sample.Iteration;
        if (metrics is not null)
        {
            var found = new List<string>();
            if (metrics.At("fid", it) is { } fid) found.Add($"FD {RunCharts.Number(fid)}");
            if (metrics.At("class_kl", it) is { } kl) found.Add($"class KL {RunCharts.Number(kl)}");
            if (metrics.At("confident", it) is { } conf) found.Add(string.Create(CultureInfo.InvariantCulture, $"confident {conf:P0}"));
            var of = spec is not null && RunData.Mixture(spec.Dataset.Kind) is { } mixture ? $"/{mixture.Modes.Count}" : "";
            if (metrics.At("modes", it) is { } modes) found.Add(string.Create(CultureInfo.InvariantCulture, $"modes {modes:F0}{of}"));
            if (metrics.At("high_quality", it) is { } hq) found.Add(string.Create(CultureInfo.InvariantCulture, $"high quality {hq:P1}"));
            if (found.Count > 0) return found;
        }
        var csv = Path.ChangeExtension(sample.Path, ".csv");
        if (points && spec is not null && File.Exists(csv))
        {
            try
            {
                if (SampleCsv.Quality(csv, spec.Dataset.Kind) is { } q)
                    return [$"modes {q.ModesCovered}/{q.Modes}", string.Create(CultureInfo.InvariantCulture, $"high quality {q.HighQualityFraction:P1}")];
            }
            catch (Exception e) when (e is FormatException or IOException) { return ["(samples CSV unreadable)"]; }
        }
        return [];
    }

    /// <summary>Width and height from a PNG's IHDR chunk; null when the bytes are not a PNG.</summary>
    internal static (int Width, int Height)? PngSize(ReadOnlySpan<byte> png)
    {
        ReadOnlySpan<byte> signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (png.Length < 24 || !png[..8].SequenceEqual(signature) || !png.Slice(12, 4).SequenceEqual("IHDR"u8)) return null;
        var (w, h) = (BinaryPrimitives.ReadInt32BigEndian(png.Slice(16, 4)), BinaryPrimitives.ReadInt32BigEndian(png.Slice(20, 4)));
        return w > 0 && h > 0 ? (w, h) : null;
    }

    /// <summary>Text for HTML: only the five markup characters escaped (WebUtility would also turn · and × into entities).</summary>
    static string E(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;").Replace("'", "&#39;");

    const string Css = """

        body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #222; background: #fff; }
        h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
        .meta, .note, .file { color: #666; font-size: 0.9em; }
        .missing { background: #fff6e0; border-left: 4px solid #e0a800; padding: 8px 12px; }
        table.spec { border-collapse: collapse; } table.spec th { text-align: left; padding: 2px 16px 2px 0; color: #555; font-weight: normal; } table.spec td { padding: 2px 0; }
        details pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 0.85em; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px; }
        figure { margin: 0 0 20px 0; }
        figure.chart svg { display: block; border: 1px solid #eee; }
        figure.chart figcaption { font-size: 0.85em; color: #555; }
        figure.sample img { display: block; max-width: 100%; height: auto; border: 1px solid #ddd; }
        figure.sample img.grid { image-rendering: pixelated; }
        figure.sample figcaption { font-size: 1.05em; margin-top: 4px; }

        """;
}
