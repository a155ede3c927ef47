using System.Diagnostics;

namespace GanCluster.Actors.Worker;

/// <summary>
/// Where a worker's time goes between two logging lines: computing and applying updates, the ring all-reduce, and
/// waiting for the seed between segments (from this worker's end of one segment to the start of the next: the
/// coordinator's round trip plus the slowest other worker). Plain counters on the worker's own thread.
/// </summary>
public sealed class StepTimes
{
    long _segmentEnded;
    long _wait, _compute, _reduce;
    int _updates, _segments;

    /// <summary>
    /// A segment started: the time since this worker ended the last one was spent waiting for the seed. Returns that
    /// wait in ticks (null for the first segment of a formation).
    /// </summary>
    public long? SegmentStarted(long now)
    {
        long? waited = _segmentEnded != 0 ? now - _segmentEnded : null;
        if (waited is { } w) _wait += w;
        _segmentEnded = 0;
        _segments++;
        return waited;
    }

    /// <summary><paramref name="updates"/> updates took <paramref name="total"/> ticks, <paramref name="reduce"/> of them in all-reduces.</summary>
    public void Worked(int updates, long total, long reduce)
    {
        _compute += total - reduce;
        _reduce += reduce;
        _updates += updates;
    }

    public void SegmentEnded(long now) => _segmentEnded = now;

    /// <summary>A new formation or run: a wait across it is not a segment's.</summary>
    public void Reset()
    {
        _segmentEnded = 0;
        ClearWindow();
    }

    void ClearWindow() => (_wait, _compute, _reduce, _updates, _segments) = (0, 0, 0, 0, 0);

    /// <summary>The window's mean all-reduce time per update in ms (0 before any update); read before <see cref="TakeSummary"/> clears the window.</summary>
    public double AllReduceMsPerUpdate => _updates == 0 ? 0 : _reduce * 1000.0 / Stopwatch.Frequency / _updates;

    /// <summary>The window's means per update, and the share of the worker's time spent waiting for the seed; then starts a new window.</summary>
    public string? TakeSummary()
    {
        if (_updates == 0) return null;
        static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
        var (compute, reduce, wait) = (Ms(_compute), Ms(_reduce), Ms(_wait));
        var all = compute + reduce + wait;
        var text = $"{_updates} updates in {_segments} segment(s): gradients and apply {compute / _updates:F2} ms, all-reduce {reduce / _updates:F2} ms per update; " +
                   $"waiting for the seed {wait:F1} ms in all ({(all > 0 ? 100 * wait / all : 0):F1} % of the time)";
        ClearWindow();
        return text;
    }
}
