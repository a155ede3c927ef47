using System.Globalization;
using GanCluster.Training.Output;

namespace GanCluster.Engine;

/// <summary>
/// Where a run is, for a live progress display: after each iteration of a local run, or at each logging line of a
/// followed cluster run. <paramref name="ImagesPerIteration"/>: the global batch. <paramref name="Latest"/>: the last
/// logged row (losses, D outputs, the window's img/s), null before the first.
/// </summary>
public sealed record RunProgress(long Iteration, long Total, int ImagesPerIteration, MetricsRow? Latest);

/// <summary>
/// The speed of a run over the last <c>window</c> of time, from (iteration, time) points, and the line a live display
/// shows. Pure: the caller gives the times, so tests need no clock.
/// </summary>
public sealed class ProgressMeter(TimeSpan window)
{
    readonly Queue<(long Iteration, double Seconds)> _points = new();
    (long Iteration, double Seconds)? _newest;
    double _lastStored;

    /// <summary>The run reached <paramref name="iteration"/> at <paramref name="seconds"/> (any fixed origin).</summary>
    public void Add(long iteration, double seconds)
    {
        // A run that went back to a checkpoint trains those iterations again: speed from before says nothing.
        if (_newest is { } n && iteration < n.Iteration) _points.Clear();
        _newest = (iteration, seconds);
        // A point per hundredth of the window is enough (a local run reports every iteration).
        if (_points.Count > 0 && seconds - _lastStored < window.TotalSeconds / 100) return;
        _points.Enqueue((iteration, seconds));
        _lastStored = seconds;
        // Keep the newest point at or before the window's start as the anchor, so a slow stream (one point per
        // logging line) still has two points.
        while (_points.Count > 2 && _points.ElementAt(1).Seconds <= seconds - window.TotalSeconds) _points.Dequeue();
    }

    /// <summary>Iterations per second over the window; null until two points some time apart.</summary>
    public double? IterationsPerSecond
    {
        get
        {
            if (_points.Count == 0 || _newest is not { } last) return null;
            var first = _points.Peek();
            var seconds = last.Seconds - first.Seconds;
            return seconds > 0 && last.Iteration > first.Iteration ? (last.Iteration - first.Iteration) / seconds : null;
        }
    }

    /// <summary>
    /// The time left for the iterations from <paramref name="iteration"/> to <paramref name="total"/> at
    /// <paramref name="iterationsPerSecond"/>: zero when done, null when the speed is not known (or not positive).
    /// </summary>
    public static TimeSpan? Eta(long iteration, long total, double? iterationsPerSecond)
    {
        if (iteration >= total) return TimeSpan.Zero;
        if (iterationsPerSecond is not > 0 || !double.IsFinite(iterationsPerSecond.Value)) return null;
        var seconds = (total - iteration) / iterationsPerSecond.Value;
        return seconds < TimeSpan.MaxValue.TotalSeconds / 2 ? TimeSpan.FromSeconds(Math.Ceiling(seconds)) : null;
    }

    /// <summary>h:mm:ss (m:ss under an hour), or "--:--" when unknown.</summary>
    public static string FormatEta(TimeSpan? eta) => eta switch
    {
        null => "--:--",
        { TotalHours: >= 1 } t => string.Create(CultureInfo.InvariantCulture, $"{(long)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}"),
        { } t => string.Create(CultureInfo.InvariantCulture, $"{t.Minutes}:{t.Seconds:D2}"),
    };

    /// <summary>
    /// The live line's text for <paramref name="p"/>: iteration, share done, img/s, ETA, and the latest losses.
    /// The speed is this meter's; before it has one, the last logged window's img/s stands in.
    /// </summary>
    public string Describe(RunProgress p)
    {
        var rate = IterationsPerSecond;
        if (rate is null && p.Latest is { ImagesPerSecond: > 0 } l && p.ImagesPerIteration > 0) rate = l.ImagesPerSecond / p.ImagesPerIteration;
        var images = rate * p.ImagesPerIteration;
        var text = string.Create(CultureInfo.InvariantCulture,
            $"iteration {p.Iteration}/{p.Total} ({(p.Total > 0 ? 100.0 * p.Iteration / p.Total : 0):F0}%)  {(images is { } i ? i.ToString("N0", CultureInfo.InvariantCulture) : "-")} img/s  ETA {FormatEta(Eta(p.Iteration, p.Total, rate))}");
        if (p.Latest is { } r)
            text += string.Create(CultureInfo.InvariantCulture, $"  Loss_D {r.LossD:F4}  Loss_G {r.LossG:F4}  D(x) {r.DReal:F3}  D(G(z)) {r.DFake:F3}");
        return text;
    }
}
