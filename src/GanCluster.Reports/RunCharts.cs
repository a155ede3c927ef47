using System.Globalization;
using ScottPlot;
using SkiaSharp;

namespace GanCluster.Reports;

/// <summary>One curve of a chart: a metrics.csv column, its legend label and colour (#rrggbb).</summary>
public sealed record ChartSeries(string Column, string Label, string Color);

/// <summary>A chart of some metrics.csv columns over iterations.</summary>
public sealed record ChartDefinition(string Id, string Title, string YLabel, IReadOnlyList<ChartSeries> Series, double? YMin = null, double? YMax = null);

/// <summary>A chart with the data of one run, ready to render as PNG (<c>plot</c>) or inline SVG (<c>report</c>).</summary>
public sealed record RunChart(ChartDefinition Definition, IReadOnlyList<(ChartSeries Series, int Points)> Drawn, Plot Plot) : IDisposable
{
    public void Dispose() => Plot.Dispose();
}

/// <summary>
/// The curves of a run, drawn once with ScottPlot: <c>gancluster plot</c> writes them as one PNG, <c>gancluster report</c>
/// inlines each as SVG. Colours are fixed per column so that a page and its screenshot can be checked for them.
/// </summary>
public static class RunCharts
{
    public const int ChartWidth = 600, ChartHeight = 320, Columns = 2;

    public static readonly ChartDefinition Losses = new("losses", "Losses", "loss",
        [new("loss_d", "loss_d", "#1f77b4"), new("loss_g", "loss_g", "#ff7f0e")]);

    public static readonly ChartDefinition Discriminator = new("discriminator", "Discriminator outputs", "mean D",
        [new("d_x", "D(x)", "#2ca02c"), new("d_g_z", "D(G(z))", "#d62728")], 0, 1);

    public static readonly ChartDefinition Throughput = new("throughput", "Throughput", "img/s",
        [new("img_per_s", "img/s", "#9467bd")], 0);

    /// <summary>Quality over time, one chart per score (their scales differ): from the quality rows.</summary>
    public static readonly IReadOnlyList<ChartDefinition> Quality =
    [
        new("fid", "Fréchet distance (lower is better)", "FD", [new("fid", "FD", "#8c564b")], 0),
        new("class_kl", "Class histogram KL (lower is better)", "KL", [new("class_kl", "class KL", "#e377c2")], 0),
        new("confident", "Confident share (higher is better)", "share > 0.9", [new("confident", "confident", "#17becf")], 0, 1),
        new("modes", "Modes covered (higher is better)", "modes", [new("modes", "modes", "#bcbd22")], 0),
        new("high_quality", "High-quality share (higher is better)", "share", [new("high_quality", "high quality", "#0b7a75")], 0, 1),
    ];

    /// <summary>The training curves (losses, D outputs, img/s), each when metrics.csv has data for it.</summary>
    public static IReadOnlyList<RunChart> Training(RunMetrics metrics) => Build(metrics, [Losses, Discriminator, Throughput]);

    /// <summary>The quality charts of the scores metrics.csv has.</summary>
    public static IReadOnlyList<RunChart> QualityCharts(RunMetrics metrics) => Build(metrics, Quality);

    static List<RunChart> Build(RunMetrics metrics, IEnumerable<ChartDefinition> definitions) =>
        definitions.Select(d => Draw(metrics, d)).OfType<RunChart>().ToList();

    /// <summary>The chart of <paramref name="definition"/>, or null when none of its columns has a value.</summary>
    public static RunChart? Draw(RunMetrics metrics, ChartDefinition definition)
    {
        var present = definition.Series.Where(s => metrics.Has(s.Column)).ToList();
        if (present.Count == 0) return null;
        var plot = new Plot();
        plot.Font.Set(FontFamily);
        plot.Title(definition.Title, size: 16);
        plot.XLabel("iteration", size: 13);
        plot.YLabel(definition.YLabel, size: 13);
        var drawn = new List<(ChartSeries, int)>();
        foreach (var s in present)
        {
            var points = metrics.Series(s.Column);
            var line = plot.Add.Scatter(points.Select(p => p.Iteration).ToArray(), points.Select(p => p.Value).ToArray(), Color.FromHex(s.Color));
            line.LegendText = s.Label;
            line.LineWidth = 2.5f;
            // Markers only while they can be told apart: a quality row every save, a few log rows.
            line.MarkerSize = points.Count <= 40 ? 6 : 0;
            drawn.Add((s, points.Count));
        }
        // Below the chart, so that it never hides a curve; a single curve is named by the title.
        if (present.Count > 1) plot.ShowLegend(Edge.Bottom);
        else plot.HideLegend();
        plot.Axes.AutoScale();
        // A score's natural range (0 to 1 for D outputs and shares, from 0 for img/s) when the data lies in it.
        var values = present.SelectMany(s => metrics.Series(s.Column)).Select(p => p.Value).ToList();
        var limits = plot.Axes.GetLimits();
        var bottom = definition.YMin is { } lo && values.Min() >= lo ? lo : limits.Bottom;
        var top = definition.YMax is { } hi && values.Max() <= hi ? hi : limits.Top;
        if (top > bottom) plot.Axes.SetLimitsY(bottom, top);
        return new RunChart(definition, drawn, plot);
    }

    /// <summary>The chart as an SVG element for inlining into HTML (no XML declaration, no external references).</summary>
    public static string Svg(RunChart chart, int width = ChartWidth, int height = ChartHeight)
    {
        var xml = chart.Plot.GetSvgXml(width, height);
        var start = xml.IndexOf("<svg", StringComparison.Ordinal);
        return start > 0 ? xml[start..] : xml;
    }

    /// <summary>The charts as one PNG, <see cref="Columns"/> per row, each <see cref="ChartWidth"/>×<see cref="ChartHeight"/>.</summary>
    public static byte[] Png(IReadOnlyList<RunChart> charts)
    {
        if (charts.Count == 0) throw new ArgumentException("no charts to draw", nameof(charts));
        var (width, height) = PngSize(charts.Count);
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        for (var i = 0; i < charts.Count; i++)
        {
            canvas.Save();
            canvas.Translate(i % Columns * ChartWidth, i / Columns * ChartHeight);
            canvas.ClipRect(new SKRect(0, 0, ChartWidth, ChartHeight));
            charts[i].Plot.Render(canvas, ChartWidth, ChartHeight);
            canvas.Restore();
        }
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>The pixel size of <see cref="Png"/> for <paramref name="charts"/> charts.</summary>
    public static (int Width, int Height) PngSize(int charts) =>
        (Math.Min(charts, Columns) * ChartWidth, (charts + Columns - 1) / Columns * ChartHeight);

    /// <summary>A sans-serif family that Skia finds here (ScottPlot's own default may resolve to a serif font).</summary>
    static readonly string FontFamily = PickFont();

    static string PickFont()
    {
        var installed = SKFontManager.Default.FontFamilies.ToHashSet(StringComparer.OrdinalIgnoreCase);
        return new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica" }.FirstOrDefault(installed.Contains) ?? "sans-serif";
    }

    internal static string Number(double v) => v.ToString(Math.Abs(v) >= 100 ? "F0" : Math.Abs(v) >= 10 ? "F1" : "G3", CultureInfo.InvariantCulture);
}
