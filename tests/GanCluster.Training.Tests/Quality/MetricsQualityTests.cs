using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Quality;

namespace GanCluster.Training.Tests.Quality;

/// <summary>metrics.csv's quality columns: the header upgrade, quality rows, the tolerant reader, trimming on resume.</summary>
public sealed class MetricsQualityTests
{
    static MetricsRow Row(long it) => new(it, 1.25, 0.75, 0.6, 0.4, 1000, it * 0.5, 0);

    [Fact]
    public void An_old_file_gets_the_new_header_and_keeps_its_rows()
    {
        using var dir = new TempFolder();
        var path = dir.File("metrics.csv");
        File.WriteAllLines(path, [MetricsRow.HeaderV1, "50,1.3,0.7,0.61,0.39,900.5,12.00,0", "100,1.2,0.8,0.59,0.41,950.0,24.00,2"]);

        using (var metrics = new MetricsCsv(path))
        {
            metrics.Append(Row(150));
            metrics.AppendQuality(150, 36.5, QualityColumns.Of(new ImageQualityResult(12.5, 0.04, 0.875, 2000)));
        }

        var lines = File.ReadAllLines(path);
        Assert.Equal("iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped,fid,class_kl,confident,modes,high_quality", lines[0]);
        Assert.Equal(13, lines[0].Split(',').Length);
        Assert.Equal("50,1.3,0.7,0.61,0.39,900.5,12.00,0", lines[1]);   // old rows as they were
        Assert.Equal(13, lines[3].Split(',').Length);                  // interval rows: the quality columns empty
        Assert.EndsWith(",0,,,,,", lines[3]);
        Assert.Equal("150,,,,,,36.50,,12.5,0.04,0.875,,", lines[4]);

        var rows = MetricsCsv.Read(path);
        Assert.Equal([50L, 100, 150, 150], rows.Select(r => r.Iteration));
        Assert.Equal(2, rows[1].Skipped);
        Assert.Equal(950.0, rows[1].ImagesPerSecond);
        Assert.Null(rows[1].Fid);             // an old row: no quality column at all
        Assert.False(rows[1].IsQuality);
        Assert.Equal(1.25, rows[2].LossD);
        Assert.Null(rows[2].ClassKl);
        Assert.True(rows[3].IsQuality);
        Assert.Null(rows[3].LossD);
        Assert.Equal(36.5, rows[3].ElapsedSeconds);
        Assert.Equal((12.5, 0.04, 0.875), (rows[3].Fid!.Value, rows[3].ClassKl!.Value, rows[3].Confident!.Value));
        Assert.Null(rows[3].Modes);
    }

    [Fact]
    public void Mode_quality_rows_trim_on_resume_and_the_reader_tolerates_damage()
    {
        using var dir = new TempFolder();
        var path = dir.File("metrics.csv");
        using (var metrics = new MetricsCsv(path))
        {
            foreach (var it in new long[] { 100, 200, 300 })
            {
                metrics.Append(Row(it));
                metrics.AppendQuality(it, null, QualityColumns.Of(new ModeQualityResult(7, 8, 0.8125, 2500)));
            }
        }
        MetricsCsv.Trim(path, 200);
        var rows = MetricsCsv.Read(path);
        Assert.Equal([100L, 100, 200, 200], rows.Select(r => r.Iteration));
        Assert.Equal(7, rows[3].Modes);
        Assert.Equal(0.8125, rows[3].HighQuality);
        Assert.Null(rows[3].ElapsedSeconds);   // unknown: left empty
        Assert.Null(rows[3].Fid);

        // A torn last line, a blank line and a cell that is not a number: skipped or null, never an exception.
        File.AppendAllText(path, "\n250,abc,0.5\n26");
        rows = MetricsCsv.Read(path);
        Assert.Equal(6, rows.Count);
        Assert.Equal(250, rows[4].Iteration);
        Assert.Null(rows[4].LossD);
        Assert.Equal(0.5, rows[4].LossG);
        Assert.Equal(26, rows[5].Iteration);
        Assert.Empty(MetricsCsv.Read(dir.File("missing.csv")));

        // Columns are found by name, in any order, with unknown ones ignored.
        var other = dir.File("other.csv");
        File.WriteAllLines(other, ["fid,extra,iteration", "3.5,x,10"]);
        var single = Assert.Single(MetricsCsv.Read(other));
        Assert.Equal((10L, 3.5), (single.Iteration, single.Fid!.Value));
    }
}
