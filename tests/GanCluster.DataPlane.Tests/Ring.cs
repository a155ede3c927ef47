using System.Collections.Concurrent;
using System.Net;

// Timing assertions (failure within the timeout) are more trustworthy on a 2-core box without other tests competing.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace GanCluster.DataPlane.Tests;

/// <summary>n ranks of one ring inside this process, on 127.0.0.1 with OS-assigned ports.</summary>
sealed class Ring : IDisposable
{
    static long s_session = Environment.ProcessId * 1000L;

    Ring(RingListener[] listeners, RingAllReduce[] ranks, RingPeer[] peers, long session)
    {
        Listeners = listeners;
        Ranks = ranks;
        Peers = peers;
        Session = session;
    }

    public RingListener[] Listeners { get; }
    public RingAllReduce[] Ranks { get; }
    public RingPeer[] Peers { get; }
    public long Session { get; }
    public ConcurrentQueue<string> Log { get; } = new();

    public static long NewSession() => Interlocked.Increment(ref s_session);

    public static RingListener[] StartListeners(int n) =>
        Enumerable.Range(0, n).Select(_ => RingListener.Start(IPAddress.Loopback)).ToArray();

    public static RingPeer[] PeersOf(RingListener[] listeners) =>
        listeners.Select((l, r) => new RingPeer(r, "127.0.0.1", l.Port)).ToArray();

    public static Ring Create(int n, TimeSpan? timeout = null, Action<RingListener[], long>? beforeConnect = null,
        ConcurrentQueue<string>? log = null, Func<int, RingSecurity>? security = null, Func<int, int>? inlineStepBytes = null,
        Func<int, RingWire>? wire = null)
    {
        var listeners = StartListeners(n);
        var peers = PeersOf(listeners);
        var session = NewSession();
        beforeConnect?.Invoke(listeners, session);
        var t = timeout ?? TimeSpan.FromSeconds(10);
        var ranks = OnAllRanks(n, r => RingAllReduce.Connect(listeners[r], session, r, peers, t,
            log: log == null ? null : log.Enqueue, security: security?.Invoke(r),
            inlineStepBytes: inlineStepBytes?.Invoke(r) ?? RingAllReduce.InlineStepBytes, wire: wire?.Invoke(r) ?? RingWire.Fp32));
        return new Ring(listeners, ranks, peers, session);
    }

    /// <summary>Runs one body per rank, each on its own thread (ranks block in socket calls).</summary>
    public static T[] OnAllRanks<T>(int n, Func<int, T> body)
    {
        var tasks = Enumerable.Range(0, n)
            .Select(r => Task.Factory.StartNew(() => body(r), CancellationToken.None,
                TaskCreationOptions.LongRunning, TaskScheduler.Default))
            .ToArray();
        Assert.True(Task.WaitAll(tasks, TimeSpan.FromSeconds(60)), "ranks did not finish in 60 s (hang)");
        return tasks.Select(t => t.Result).ToArray();
    }

    public void Run(Action<RingAllReduce, int> body) =>
        OnAllRanks(Ranks.Length, r =>
        {
            body(Ranks[r], r);
            return 0;
        });

    public void Dispose()
    {
        foreach (var r in Ranks)
            r.Dispose();
        foreach (var l in Listeners)
            l.Dispose();
    }
}
