using System.Diagnostics;

namespace GanCluster.Actors.Worker;

/// <summary>
/// Where a worker's time goes between two logging lines: applying the committed update, computing gradients, the
/// ring all-reduce, and waiting for the seed (from this worker's reply to the next ExecuteStep: the coordinator's
/// round trip plus the slowest other worker). Plain counters on the worker's own thread.
/// </summary>
public sealed class StepTimes
{
    long _lastReply;
    long _wait, _commit, _compute, _reduce;
    int _updates, _waits;

    /// <summary>An ExecuteStep arrived: the time since this worker's last reply was spent waiting for the seed.</summary>
    public void Arrived(long now)
    {
        if (_lastReply == 0) return;
        _wait += now - _lastReply;
        _waits++;
    }

    public void Worked(long commit, long compute, long reduce)
    {
        _commit += commit;
        _compute += compute;
        _reduce += reduce;
        _updates++;
    }

    public void Replied(long now) => _lastReply = now;

    /// <summary>A new formation or run: a wait across it is not an update's.</summary>
    public void Reset()
    {
        _lastReply = 0;
        ClearWindow();
    }

    void ClearWindow() => (_wait, _commit, _compute, _reduce, _updates, _waits) = (0, 0, 0, 0, 0, 0);

    /// <summary>The window's means per update, and how much of the worker's time was spent waiting; then starts a new window.</summary>
    public string? TakeSummary()
    {
        if (_updates == 0) return null;
        static double Ms(long ticks, int n) => n == 0 ? 0 : ticks * 1000.0 / Stopwatch.Frequency / n;
        var (commit, compute, reduce, wait) = (Ms(_commit, _updates), Ms(_compute, _updates), Ms(_reduce, _updates), Ms(_wait, _waits));
        var busy = commit + compute + reduce;
        var text = $"{_updates} updates: apply {commit:F2} ms, gradients {compute:F2} ms, all-reduce {reduce:F2} ms, " +
                   $"waiting for the seed {wait:F2} ms per update ({(busy + wait > 0 ? 100 * wait / (busy + wait) : 0):F0} % of the time)";
        ClearWindow();
        return text;
    }
}
