namespace GanCluster.DataPlane;

/// <summary>
/// A monotonically increasing count of finished pipeline blocks that one thread publishes and the other
/// waits on. Blocking (not spinning) because on a 2-core box a spinner steals the core the producer needs.
/// </summary>
sealed class Progress
{
    readonly object _gate = new();
    long _value;
    int _waiters;
    volatile bool _aborted;

    public long Value => Interlocked.Read(ref _value);

    public void Reset()
    {
        Interlocked.Exchange(ref _value, 0);
        _aborted = false;
    }

    public void Advance()
    {
        Interlocked.Increment(ref _value);
        if (Volatile.Read(ref _waiters) > 0)
            lock (_gate)
                Monitor.PulseAll(_gate);
    }

    public void Abort()
    {
        _aborted = true;
        lock (_gate)
            Monitor.PulseAll(_gate);
    }

    /// <summary>Waits until at least <paramref name="target"/> blocks are done; false on abort or timeout.</summary>
    public bool WaitFor(long target, TimeSpan timeout)
    {
        if (Interlocked.Read(ref _value) >= target)
            return true;
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        lock (_gate)
        {
            Interlocked.Increment(ref _waiters);
            try
            {
                while (Interlocked.Read(ref _value) < target)
                {
                    if (_aborted)
                        return false;
                    var left = deadline - Environment.TickCount64;
                    if (left <= 0)
                        return false;
                    Monitor.Wait(_gate, (int)Math.Min(left, int.MaxValue));
                }
                return true;
            }
            finally
            {
                Interlocked.Decrement(ref _waiters);
            }
        }
    }
}
