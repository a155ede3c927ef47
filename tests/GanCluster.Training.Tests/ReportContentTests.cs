using System.Globalization;
using System.Text.RegularExpressions;
using GanCluster.Reports;
using GanCluster.Training.Spec;
using SkiaSharp;

namespace GanCluster.Training.Tests;

/// <summary>What the report reads from metrics.csv and samples/, on files these tests write.</summary>
public class ReportContentTests
{
    const string OldHeader = "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped";
    const string NewHeader = OldHeader + ",fid,class_kl,confident,modes,high_quality";

    [Fact]
    public void Metrics_are_read_by_header_name_in_both_schemas()
    {
        var old = RunMetrics.Parse($"{OldHeader}\n50,1.2,0.8,0.6,0.4,900.5,3.1,0\n100,1.1,0.9,0.55,0.45,1000,6.2,2\n");
        Assert.Equal(2, old.Rows);
        Assert.Equal([(50.0, 1.2), (100.0, 1.1)], old.Series("loss_d"));
        Assert.Equal([(50.0, 900.5), (100.0, 1000.0)], old.Series("img_per_s"));
        Assert.False(old.Has("fid"));
        Assert.Empty(old.UnknownColumns);
        Assert.Equal(100, old.LastIteration);

        // The new header: interval rows leave the quality cells empty, quality rows fill only iteration, elapsed_s and scores.
        var text = $"""
            {NewHeader}
            50,1.2,0.8,0.6,0.4,900,3.1,0,,,,,
            100,1.1,0.9,0.55,0.45,1000,6.2,0,,,,,
            100,,,,,,6.9,,41.5,0.21,0.62,,
            150,1.0,1.0,0.5,0.5,1100,9.3,0,,,,,
            200,0.9,1.1,0.52,0.48,1050,12.4,0,,,,,
            200,,,,,,13.0,,30.25,0.12,0.71,,
            """;
        var m = RunMetrics.Parse(text);
        Assert.Equal(6, m.Rows);
        Assert.Equal([50.0, 100, 150, 200], m.Series("loss_d").Select(p => p.Iteration));
        Assert.Equal([(100.0, 41.5), (200.0, 30.25)], m.Series("fid"));
        Assert.Equal([(100.0, 0.62), (200.0, 0.71)], m.Series("confident"));
        Assert.False(m.Has("modes"));
        Assert.Equal(30.25, m.At("fid", 200));
        Assert.Null(m.At("fid", 150));
        // elapsed_s of the quality row replaces the interval row's for the same iteration: the last row wins.
        Assert.Equal((200.0, 13.0), m.Series("elapsed_s")[^1]);

        var charts = RunCharts.QualityCharts(m);
        Assert.Equal(["fid", "class_kl", "confident"], charts.Select(c => c.Definition.Id));
        Assert.All(charts, c => Assert.Equal(2, c.Drawn.Single().Points));
        Assert.Equal(["losses", "discriminator", "throughput"], RunCharts.Training(m).Select(c => c.Definition.Id));
    }

    [Fact]
    public void Unknown_columns_other_orders_short_and_half_written_lines_are_tolerated()
    {
        var m = RunMetrics.Parse("""
            loss_g,iteration,gpu_mem_mb,loss_d
            0.7,10,512,1.3
            0.8,20,,1.2
            0.9,30
            nan,40,600,1.0
            0.95,5
            """ + "\n1.0,6");   // the last line cut mid-row, as while the trainer appends
        Assert.Equal(["gpu_mem_mb"], m.UnknownColumns);
        Assert.Equal(0, m.BadLines);
        Assert.Equal([(5.0, 0.95), (6.0, 1.0), (10.0, 0.7), (20.0, 0.8), (30.0, 0.9)], m.Series("loss_g"));   // nan skipped, by iteration
        Assert.Equal([(10.0, 1.3), (20.0, 1.2), (40.0, 1.0)], m.Series("loss_d"));
        Assert.Equal([(10.0, 512.0), (40.0, 600.0)], m.Series("gpu_mem_mb"));

        var bad = RunMetrics.Parse("iteration,loss_d\n10,1\nten,2\n,3\n20,0.5\n");
        Assert.Equal(2, bad.Rows);
        Assert.Equal(2, bad.BadLines);

        Assert.Equal(0, RunMetrics.Parse("").Rows);
        var e = Assert.Throws<InvalidDataException>(() => RunMetrics.Parse("step,loss\n1,2\n"));
        Assert.Contains("no \"iteration\" column (header: step,loss)", e.Message);
    }

    [Fact]
    public void Long_runs_show_twelve_evenly_spaced_grids_and_the_last_each_captioned_with_its_quality()
    {
        using var dir = new TempFolder();
        File.WriteAllText(dir.File("spec.json"), new RunSpec { Name = "long", Dataset = new DatasetSpec { Kind = "mnist", Path = "x" }, Model = new ModelSpec { Kind = "dcgan" } }.ToJson());
        // 30 grids (iterations 100..3000) and a quality row at every 500.
        var csv = new List<string> { NewHeader };
        for (var it = 100; it <= 3000; it += 100)
        {
            using var bitmap = new SKBitmap(new SKImageInfo(30, 30));
            bitmap.Erase(new SKColor((byte)(it / 20), 0, 0));
            using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(dir.File($"samples/iter-{it:D8}.png"), data.ToArray());
            csv.Add(string.Create(CultureInfo.InvariantCulture, $"{it},1,1,0.5,0.5,100,{it / 10},0,,,,,"));
            if (it % 500 == 0) csv.Add(string.Create(CultureInfo.InvariantCulture, $"{it},,,,,,{it / 10 + 1},,{1000.0 / it:F3},0.1,0.5,,"));
        }
        File.WriteAllLines(dir.File("metrics.csv"), csv);

        var (html, summary) = RunReport.Render(dir.Path, DateTimeOffset.UnixEpoch);
        Assert.Equal((13, 30), (summary.GridsShown, summary.GridsTotal));
        Assert.Contains("Showing 13 of 30 sample files, newest first: the last, and 12 evenly spaced from the first.", html);
        var shown = Regex.Matches(html, @"data-iteration=""(\d+)""").Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(3000, shown[0]);
        Assert.Equal(100, shown[^1]);
        var gaps = shown.Zip(shown.Skip(1), (a, b) => (a - b) / 100).ToList();
        Assert.True(gaps.All(g => g >= 2 && g <= 3), $"uneven picks: {string.Join(", ", shown)}");

        // A grid of a quality row's iteration has its scores in the caption; 30-px grids are shown at 800/30 ≈ 27×.
        foreach (var it in shown)
        {
            var figure = Regex.Match(html, $@"<figure class=""sample"" data-iteration=""{it}"">.*?</figure>").Value;
            Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"iteration {it:N0}"), figure);
            if (it % 500 == 0) Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"FD {RunCharts.Number(double.Parse((1000.0 / it).ToString("F3", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture))} · class KL 0.1 · confident 50 %"), figure);
            else Assert.DoesNotContain("FD ", figure);
            Assert.Contains(@"width=""810"" height=""810""", figure);
        }
        Assert.Contains(@"id=""chart-fid""", html);
        Assert.Equal(3 + 3, summary.Charts);
    }

    [Fact]
    public void Two_dimensional_samples_are_captioned_with_their_mode_score_when_no_quality_row_has_it()
    {
        using var dir = new TempFolder();
        File.WriteAllText(dir.File("spec.json"), TinySpecs.Ring8(dir.Path, 10).ToJson());
        // All points on the eight ring8 modes: every mode covered, every point of high quality.
        var modes = Training.Core.RunData.Mixture("ring8")!.Value.Modes;
        var xy = Enumerable.Range(0, 80).SelectMany(i => new[] { modes[i % 8].X, modes[i % 8].Y }).ToArray();
        Training.Core.SampleCsv.Write(dir.File("samples/iter-00000010.csv"), xy);
        File.WriteAllBytes(dir.File("samples/iter-00000010.png"), Training.Core.RunArtifacts.EncodeScatter(xy, "ring8"));
        var (html, _) = RunReport.Render(dir.Path, DateTimeOffset.UnixEpoch);
        Assert.Contains("iteration 10 · modes 8/8 · high quality 100.0 %", html);
        Assert.Contains(@"class=""scatter""", html);
        Assert.Contains("512×512 px shown at 1×", html);

        // A quality row of that iteration is what the run itself measured: it wins, and is charted.
        File.WriteAllText(dir.File("metrics.csv"), $"{NewHeader}\n10,1.3,0.7,0.5,0.5,900,1.0,0,,,,,\n10,,,,,,1.2,,,,,7,0.875\n");
        (html, _) = RunReport.Render(dir.Path, DateTimeOffset.UnixEpoch);
        Assert.Contains("iteration 10 · modes 7/8 · high quality 87.5 %", html);
        Assert.Contains(@"id=""chart-modes"" data-columns=""modes"" data-colors=""#bcbd22"" data-points=""1""", html);
        Assert.Contains(@"id=""chart-high_quality""", html);
        Assert.DoesNotContain(@"id=""chart-fid""", html);
    }
}
