using System.Collections.Concurrent;
using System.Globalization;
using GanCluster.Training.Core;
using GanCluster.Training.Native;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Output;

/// <summary>
/// A run's TensorBoard event files under <c>OUTPUT/tensorboard/</c>, written by TorchSharp's own
/// <see cref="SummaryWriter"/>. Every call only queues; one background thread writes, in order, so neither the training
/// loop nor the seed's checkpoint actor waits on the disk (the writer opens and appends to its file per event, and a
/// sample image is decoded and encoded again). Each process start makes a new event file, as TensorBoard expects.
/// <para>
/// Tags: <see cref="Metrics"/> writes one scalar per metrics.csv column (<see cref="MetricTags"/>) at the row's iteration;
/// <see cref="Samples"/> the sample grid (or 2-D scatter) PNG as an image; <see cref="Scalars"/> anything else
/// (quality scores, the cluster's all-reduce time).
/// </para>
/// </summary>
public sealed class TensorBoardLog : IDisposable
{
    public const string Folder = "tensorboard";

    /// <summary>metrics.csv's columns and the tags they are written under.</summary>
    public static readonly IReadOnlyList<(string Column, string Tag)> MetricTags =
    [
        ("loss_d", "loss/d"), ("loss_g", "loss/g"), ("d_x", "d/x"), ("d_g_z", "d/g_z"), ("img_per_s", "speed/img_per_s"), ("skipped", "nan_guard/skipped"),
    ];

    /// <summary>The tag of the mean all-reduce time per update (ms) of a cluster run's logging window.</summary>
    public const string AllReduceTag = "cluster/allreduce_ms_per_update";
    public const string SamplesTag = "samples";

    readonly string _dir;
    readonly Action<string> _warn;
    // A write, or a flush marker (Write null) to set once everything before it is written.
    readonly BlockingCollection<(Action<SummaryWriter>? Write, ManualResetEventSlim? Done)> _queue = new();
    readonly Thread _thread;
    bool _warned;

    /// <param name="output">The run's output folder; events go to its <see cref="Folder"/>.</param>
    /// <param name="warn">Told once when the events cannot be written (libtorch not loadable, a disk error); training goes on.</param>
    public TensorBoardLog(string output, Action<string> warn)
    {
        _dir = PathOf(output);
        _warn = warn;
        _thread = new Thread(Drain) { IsBackground = true, Name = "tensorboard" };
        _thread.Start();
    }

    public static string PathOf(string output) => Path.Combine(output, Folder);

    /// <summary>One metrics.csv row, one scalar per column, at its iteration.</summary>
    public void Metrics(MetricsRow row)
    {
        double[] values = [row.LossD, row.LossG, row.DReal, row.DFake, row.ImagesPerSecond, row.Skipped];
        Scalars(row.Iteration, MetricTags.Select((c, i) => (c.Tag, values[i])).ToDictionary(x => x.Tag, x => x.Item2));
    }

    /// <summary>Scalars at <paramref name="step"/> under their tags (e.g. quality scores at a save). Non-finite values are skipped.</summary>
    public void Scalars(long step, IReadOnlyDictionary<string, double> values)
    {
        var points = values.Where(v => double.IsFinite(v.Value)).Select(v => (v.Key, (float)v.Value)).ToList();
        Enqueue(w =>
        {
            foreach (var (tag, value) in points) w.add_scalar(tag, value, Step(step), Now());
        });
    }

    /// <summary>The PNG of a sample point (a grid of images, or the 2-D scatter), and the mode quality of 2-D samples.</summary>
    public void Samples(long step, string png, ModeQualityResult? quality = null)
    {
        if (quality is not null)
            Scalars(step, new Dictionary<string, double>
            {
                ["quality/modes_covered"] = quality.ModesCovered, ["quality/high_quality_share"] = quality.HighQualityFraction,
            });
        Enqueue(w => w.add_img(SamplesTag, png, Step(step), Now()));
    }

    /// <summary>An image run's quality scores at a save (<c>evaluation.quality</c> <c>saves</c>), as in metrics.csv's quality row.</summary>
    public void Quality(long step, Quality.ImageQualityResult scores) =>
        Scalars(step, new Dictionary<string, double>
        {
            ["quality/fid"] = scores.FrechetDistance, ["quality/class_kl"] = scores.ClassKl, ["quality/confident_share"] = scores.ConfidentFraction,
        });

    /// <summary>
    /// A resumed run: metrics.csv has been trimmed to the checkpoint's iteration; its last row is written again.
    /// TensorBoard keeps, per tag, only the points before a step it reads again, so the earlier process's points past
    /// that row (iterations now trained again) disappear at once instead of when the next row reaches them.
    /// </summary>
    public void Resumed(string metricsCsv)
    {
        if (LastRow(metricsCsv) is { } row) Metrics(row);
    }

    /// <summary>Waits until everything queued so far is written.</summary>
    public void Flush()
    {
        using var done = new ManualResetEventSlim();
        if (Add((null, done))) done.Wait();
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join();
        _queue.Dispose();
    }

    void Enqueue(Action<SummaryWriter> write) => Add((write, null));

    bool Add((Action<SummaryWriter>?, ManualResetEventSlim?) item)
    {
        try
        {
            _queue.Add(item);
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;   // disposed: the run is over
        }
    }

    void Drain()
    {
        SummaryWriter? writer = null;
        foreach (var (write, done) in _queue.GetConsumingEnumerable())
        {
            if (done is not null)
            {
                done.Set();
                continue;
            }
            try
            {
                // The writer's CRC32C is libtorch's (a seed that is no worker loads it here, off its actors' threads).
                if (writer is null && !_warned)
                {
                    TorchRuntime.Initialize();
                    writer = utils.tensorboard.SummaryWriter(_dir);
                }
                if (writer is not null) write!(writer);
            }
            catch (Exception e)   // libtorch not loadable, a full disk, an unreadable PNG: never worth a training run (this thread must not throw)
            {
                if (!_warned) _warn($"TensorBoard events under {_dir} are not written: {e.Message}");
                _warned = true;
            }
        }
    }

    static int Step(long iteration) => (int)Math.Min(iteration, int.MaxValue);

    static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>The last interval row of a metrics.csv (any version of it), or null when it has none.</summary>
    public static MetricsRow? LastRow(string metricsCsv)
    {
        // The last interval row: a quality row (a save's scores) has no losses.
        var last = MetricsCsv.Read(metricsCsv).LastOrDefault(r => r.LossD is not null);
        return last is null ? null
            : new MetricsRow(last.Iteration, last.LossD ?? double.NaN, last.LossG ?? double.NaN, last.DReal ?? double.NaN, last.DFake ?? double.NaN,
                last.ImagesPerSecond ?? double.NaN, last.ElapsedSeconds ?? double.NaN, last.Skipped ?? 0);
    }
}
