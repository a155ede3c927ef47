using System.Globalization;
using System.Text;
using GanCluster.Engine;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

/// <summary>
/// The event files TorchSharp's SummaryWriter writes for a run, read back with <see cref="TfEvents"/> (TensorBoard
/// itself is not installable here): the TFRecord framing with both CRCs, the tags, steps and values.
/// </summary>
public class TensorBoardTests
{
    public TensorBoardTests() => TorchSetup.Ensure();

    [Fact]
    public void The_readers_crc32c_is_the_standard_one()
    {
        // The CRC-32C check value (RFC 3720 B.4 and every CRC catalogue): CRC of "123456789".
        Assert.Equal(0xE3069283u, TfEvents.Crc32C(Encoding.ASCII.GetBytes("123456789")));
        Assert.Equal(0x8A9136AAu, TfEvents.Crc32C(new byte[32]));   // RFC 3720 B.4: 32 bytes of zeros
    }

    [Fact]
    public void A_local_run_writes_every_metrics_row_and_each_sample_image_to_its_event_file()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 20) with
        {
            Training = TinySpecs.Ring8(dir.Path, 20).Training with { LogEvery = 5, SampleEvery = 10 },
        };
        new LocalTrainer(spec, CPU, TextWriter.Null).Run();

        var files = Directory.GetFiles(TensorBoardLog.PathOf(dir.Path));
        Assert.Single(files);
        var events = TfEvents.ReadFile(files[0]);   // throws on a bad CRC or framing
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        var points = TfEvents.ReadFolder(TensorBoardLog.PathOf(dir.Path));

        // Every metrics.csv column is a tag with the same steps and values (float32 of the csv's G6 / F1 numbers).
        var csv = ReadCsv(Path.Combine(dir.Path, "metrics.csv"));
        Assert.Equal([5L, 10, 15, 20], csv.Select(r => (long)r["iteration"]));
        foreach (var (column, tag) in TensorBoardLog.MetricTags)
        {
            var series = points.Where(p => p.Tag == tag).ToList();
            Assert.Equal(csv.Select(r => (long)r["iteration"]), series.Select(p => p.Step));
            foreach (var (row, point) in csv.Zip(series)) AssertSame(row, column, point);
        }
        // Wall times are seconds since 1970 (TensorBoard's relative and wall-clock axes).
        Assert.All(points, p => Assert.InRange(p.WallTime, DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1));

        // The sample scatter PNGs at 10 and 20, as images of their own size, and their mode quality.
        var images = points.Where(p => p.Tag == TensorBoardLog.SamplesTag).ToList();
        Assert.Equal([10L, 20], images.Select(p => p.Step));
        foreach (var image in images)
        {
            Assert.True(TfEvents.IsPng(image.Image!.Encoded), "encoded image is not a PNG");
            var sample = File.ReadAllBytes(Path.Combine(dir.Path, "samples", $"iter-{image.Step:D8}.png"));
            Assert.Equal(TfEvents.PngSize(sample), TfEvents.PngSize(image.Image.Encoded));
            Assert.Equal((image.Image.Width, image.Image.Height), TfEvents.PngSize(sample));
        }
        var modes = points.Where(p => p.Tag == "quality/modes_covered").ToList();
        Assert.Equal([10L, 20], modes.Select(p => p.Step));
        Assert.All(modes, p => Assert.InRange(p.Value!.Value, 0, 8));
    }

    [Fact]
    public void A_resumed_run_leaves_tensorboard_one_point_per_step_equal_to_metrics_csv()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 20) with
        {
            Training = TinySpecs.Ring8(dir.Path, 20).Training with { LogEvery = 5 },
            Checkpoint = new CheckpointSpec { Every = 10, Keep = 3 },
        };
        new LocalTrainer(spec, CPU, TextWriter.Null).Run();
        // As if the process died after logging 15 and 20 but before checkpoint 20 was written.
        Directory.Delete(CheckpointStore.PathOf(dir.Path, 20), recursive: true);
        var log = new StringWriter();
        new LocalTrainer(spec, CPU, log).Run();
        Assert.Contains("(iteration 10)", log.ToString());

        var files = Directory.GetFiles(TensorBoardLog.PathOf(dir.Path)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(2, files.Count);   // one per process start
        // The second process starts by writing metrics.csv's last kept row (10) again, then trains 15 and 20 again.
        var second = TfEvents.ReadFile(files[1]).Where(e => e.Values.Any(v => v.Tag == "loss/d")).Select(e => e.Step);
        Assert.Equal([10L, 15, 20], second);

        // TensorBoard's view: per tag, a point read later drops the points of earlier files at its step or after.
        var csv = ReadCsv(Path.Combine(dir.Path, "metrics.csv"));
        Assert.Equal([5L, 10, 15, 20], csv.Select(r => (long)r["iteration"]));
        foreach (var (column, tag) in TensorBoardLog.MetricTags)
        {
            var shown = Preempted(TfEvents.ReadFolder(TensorBoardLog.PathOf(dir.Path)).Where(p => p.Tag == tag));
            Assert.Equal(csv.Select(r => (long)r["iteration"]), shown.Select(p => p.Step));
            foreach (var (row, point) in csv.Zip(shown)) AssertSame(row, column, point);
        }
    }

    [Fact]
    public void A_run_whose_event_folder_cannot_be_made_trains_on_and_says_why()
    {
        using var dir = new TempFolder();
        File.WriteAllText(TensorBoardLog.PathOf(dir.Path), "a file where the folder should be");
        var log = new StringWriter();
        var result = new LocalTrainer(TinySpecs.Ring8(dir.Path, iterations: 10), CPU, log).Run();

        Assert.Equal(10, result.Iterations);
        Assert.Single(log.ToString().Split('\n'), l => l.Contains("warning: TensorBoard events under"));
        Assert.Contains("final parameter checksum", log.ToString());
    }

    [Fact]
    public void General_scalars_land_under_their_own_tags()
    {
        using var dir = new TempFolder();
        using (var tb = new TensorBoardLog(dir.Path, warn: m => Assert.Fail(m)))
        {
            tb.Scalars(40, new Dictionary<string, double> { ["quality/fd"] = 12.5, ["quality/class_kl"] = 0.25, ["quality/nan"] = double.NaN });
            tb.Flush();
            Assert.Equal(2, TfEvents.ReadFolder(TensorBoardLog.PathOf(dir.Path)).Count);   // written by Flush, before Dispose
        }
        var points = TfEvents.ReadFolder(TensorBoardLog.PathOf(dir.Path));
        Assert.Equal([("quality/fd", 40L, 12.5f), ("quality/class_kl", 40L, 0.25f)], points.Select(p => (p.Tag, p.Step, p.Value!.Value)));
    }

    /// <summary>A csv cell (G6, img/s F1) and the float32 an event holds for it.</summary>
    static void AssertSame(Dictionary<string, double> row, string column, TfEvents.Point point) =>
        Assert.True(Math.Abs(row[column] - point.Value!.Value) <= 1e-5 * Math.Max(1, Math.Abs(row[column])) + (column == "img_per_s" ? 0.05 : 0),
            $"{point.Tag} at {point.Step}: metrics.csv {row[column]}, event {point.Value}");

    /// <summary>TensorBoard's rule for a series read from several files: a point drops every earlier-read point at its step or later.</summary>
    static List<TfEvents.Point> Preempted(IEnumerable<TfEvents.Point> inReadOrder)
    {
        var kept = new List<TfEvents.Point>();
        foreach (var p in inReadOrder)
        {
            kept.RemoveAll(k => k.Step >= p.Step);
            kept.Add(p);
        }
        return kept;
    }

    /// <summary>metrics.csv's interval rows, each as its filled cells (a quality row, or a quality column, has empty cells).</summary>
    static List<Dictionary<string, double>> ReadCsv(string path)
    {
        var lines = File.ReadAllLines(path);
        var header = lines[0].Split(',');
        return [.. lines.Skip(1)
            .Select(l => header.Zip(l.Split(',')).Where(x => x.Second.Length > 0).ToDictionary(x => x.First, x => double.Parse(x.Second, CultureInfo.InvariantCulture)))
            .Where(row => row.ContainsKey("loss_d"))];
    }
}
