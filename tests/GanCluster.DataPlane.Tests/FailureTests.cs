using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Tests;

public sealed class FailureTests
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);
    // Room for thread start-up and 16 MB of buffers per rank on a busy 2-core machine.
    static readonly TimeSpan Margin = TimeSpan.FromSeconds(4);

    /// <summary>Every rank but <paramref name="victim"/> starts an all-reduce; returns what each one threw and when.</summary>
    static (Exception? Error, TimeSpan Elapsed)[] RunWithout(Ring ring, int victim, Action? whileRunning)
    {
        var n = ring.Ranks.Length;
        var started = new CountdownEvent(n - 1);
        var tasks = Enumerable.Range(0, n).Where(r => r != victim).Select(r => Task.Factory.StartNew(() =>
        {
            var data = new float[4_000_000];
            var watch = Stopwatch.StartNew();
            started.Signal();
            try
            {
                ring.Ranks[r].AllReduceSum(data);
                return ((Exception?)null, watch.Elapsed);
            }
            catch (Exception e)
            {
                return (e, watch.Elapsed);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        Assert.True(started.Wait(TimeSpan.FromSeconds(10)));
        whileRunning?.Invoke();
        Assert.True(Task.WaitAll(tasks, Timeout + Margin + TimeSpan.FromSeconds(10)), "a rank hung");
        return tasks.Select(t => t.Result).ToArray();
    }

    static void AssertNamedFailure((Exception? Error, TimeSpan Elapsed) result, TimeSpan limit)
    {
        var e = Assert.IsType<AllReduceException>(result.Error);
        Assert.Matches(@"rank \d+ \(127\.0\.0\.1:\d+\)", e.Message);
        Assert.True(result.Elapsed < limit, $"took {result.Elapsed.TotalSeconds:0.00} s: {e.Message}");
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(3, 2)]
    [InlineData(4, 1)]
    public void PeerDisposedMidOperationMakesEveryOtherRankThrow(int n, int victim)
    {
        using var ring = Ring.Create(n, Timeout);
        var results = RunWithout(ring, victim, () =>
        {
            // Mid-operation: every live rank has put its first block on the wire.
            Assert.True(SpinWait.SpinUntil(
                () => ring.Ranks.Where((_, r) => r != victim).All(x => x.LastBytesSent > 0), TimeSpan.FromSeconds(10)));
            ring.Ranks[victim].Dispose();
        });
        // Closing sockets propagates around the ring at once; no one should need the timeout.
        foreach (var result in results)
            AssertNamedFailure(result, Timeout + Margin);

        // The instances are unusable afterwards, and say why.
        var again = Assert.Throws<AllReduceException>(() => ring.Ranks[(victim + 1) % n].AllReduceSum(new float[10]));
        Assert.Contains("earlier failure", again.Message);
    }

    [Fact]
    public void SilentPeerMakesEveryOtherRankThrowWithinTheTimeout()
    {
        using var ring = Ring.Create(3, Timeout);
        var results = RunWithout(ring, victim: 1, whileRunning: null);
        foreach (var result in results)
            AssertNamedFailure(result, Timeout + Margin);
        // Rank 2 waits on rank 1, which never sends: it is the one that times out and names it.
        Assert.Contains("rank 1 (127.0.0.1:", results[1].Error!.Message);
        Assert.Contains("timeout", results[1].Error!.Message);
    }

    [Fact]
    public void SocketClosedFromAnotherThreadFailsTheOperation()
    {
        using var ring = Ring.Create(2, Timeout);
        // Rank 1 never calls; rank 0 is disposed from another thread while it waits in the operation.
        var results = RunWithout(ring, victim: 1, () =>
        {
            Assert.True(SpinWait.SpinUntil(() => ring.Ranks[0].LastBytesSent > 0, TimeSpan.FromSeconds(10)));
            ring.Ranks[0].Dispose();
        });
        var e = Assert.IsType<AllReduceException>(results[0].Error);
        Assert.Contains("disposed", e.Message);
        Assert.Throws<ObjectDisposedException>(() => ring.Ranks[0].AllReduceSum(new float[1]));
    }

    [Fact]
    public void MismatchedLengthsAreAnErrorNotGarbage()
    {
        using var ring = Ring.Create(2, Timeout);
        var data = new[] { new float[1000], new float[1001] };
        Array.Fill(data[0], 1f);
        Array.Fill(data[1], 2f);
        var errors = new Exception?[2];
        ring.Run((rank, r) =>
        {
            try
            {
                rank.AllReduceSum(data[r]);
            }
            catch (Exception e)
            {
                errors[r] = e;
            }
        });
        // Whoever reads the other's header first reports the mismatch; the other then sees its neighbour close.
        Assert.All(errors, e => Assert.IsType<AllReduceException>(e));
        Assert.Contains(errors, e => e!.Message.Contains("mismatched frame"));
        Assert.All(data[0], v => Assert.Equal(1f, v));
        Assert.All(data[1], v => Assert.Equal(2f, v));
    }

    /// <summary>A hand-written peer that completes the handshake, then sends a stale frame (wrong op sequence number).</summary>
    [Fact]
    public async Task StaleFrameIsRejectedAndNeverAddedIn()
    {
        using var listener = RingListener.Start(IPAddress.Loopback);
        using var fakeListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        fakeListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        fakeListener.Listen();
        var session = Ring.NewSession();
        var peers = new[]
        {
            new RingPeer(0, "127.0.0.1", listener.Port),
            new RingPeer(1, "127.0.0.1", ((IPEndPoint)fakeListener.LocalEndPoint!).Port),
        };
        var connect = Task.Factory.StartNew(() => RingAllReduce.Connect(listener, session, 0, peers, Timeout),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        // Fake rank 1: accept rank 0's connection and acknowledge; connect to rank 0 and say hello.
        var key = FakePeer.InsecureKey(session, peers);
        using var fromZero = fakeListener.Accept();
        Assert.True(FakePeer.Accept(fromZero, key, session, 1, 0, 2));
        using var toZero = FakePeer.ConnectTo(listener.Port);
        Assert.True(FakePeer.Connect(toZero, key, session, 1, 0, 2).AckVerified);
        using var ring = await connect;

        // Op #1 expects sequence number 1; a frame of op 0 with the right length must not be added in.
        var data = Enumerable.Repeat(1f, 64).ToArray();
        var frame = new byte[Wire.HeaderSize + 32 * sizeof(float)];
        Wire.WriteHeader(frame, new Wire.FrameHeader(0, 0, 32 * sizeof(float), 64));
        BitConverter.GetBytes(1000f).CopyTo(frame, Wire.HeaderSize);
        Wire.SendAll(toZero, frame);
        var e = Assert.Throws<AllReduceException>(() => ring.AllReduceSum(data));
        Assert.Contains("rank 1 (127.0.0.1:", e.Message);
        Assert.Contains("mismatched frame", e.Message);
        Assert.All(data, v => Assert.Equal(1f, v));
    }

    [Fact]
    public async Task GarbageInsteadOfAFrameIsRejected()
    {
        using var listener = RingListener.Start(IPAddress.Loopback);
        using var fakeListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        fakeListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        fakeListener.Listen();
        var session = Ring.NewSession();
        var peers = new[]
        {
            new RingPeer(0, "127.0.0.1", listener.Port),
            new RingPeer(1, "127.0.0.1", ((IPEndPoint)fakeListener.LocalEndPoint!).Port),
        };
        var connect = Task.Factory.StartNew(() => RingAllReduce.Connect(listener, session, 0, peers, Timeout),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var key = FakePeer.InsecureKey(session, peers);
        using var fromZero = fakeListener.Accept();
        Assert.True(FakePeer.Accept(fromZero, key, session, 1, 0, 2));
        using var toZero = FakePeer.ConnectTo(listener.Port);
        Assert.True(FakePeer.Connect(toZero, key, session, 1, 0, 2).AckVerified);
        using var ring = await connect;

        Wire.SendAll(toZero, new byte[Wire.HeaderSize + 256].Select((_, i) => (byte)(i * 37)).ToArray());
        var data = new float[64];
        var e = Assert.Throws<AllReduceException>(() => ring.AllReduceSum(data));
        Assert.Contains("bad framing", e.Message);
        Assert.All(data, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void ConnectTimesOutWhenThePeerNeverComes()
    {
        using var listeners = new DisposableArray(Ring.StartListeners(2));
        var peers = Ring.PeersOf(listeners.Items);
        var watch = Stopwatch.StartNew();
        var e = Assert.Throws<AllReduceException>(() =>
            RingAllReduce.Connect(listeners.Items[0], Ring.NewSession(), 0, peers, TimeSpan.FromMilliseconds(500)));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3), watch.Elapsed.ToString());
        Assert.Contains("rank 1 (127.0.0.1:", e.Message);
    }

    [Fact]
    public void ConnectHonoursCancellation()
    {
        using var listeners = new DisposableArray(Ring.StartListeners(2));
        var peers = Ring.PeersOf(listeners.Items);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        Assert.ThrowsAny<OperationCanceledException>(() =>
            RingAllReduce.Connect(listeners.Items[0], Ring.NewSession(), 0, peers, TimeSpan.FromSeconds(30), cts.Token));
    }

    sealed class DisposableArray(RingListener[] items) : IDisposable
    {
        public RingListener[] Items { get; } = items;

        public void Dispose()
        {
            foreach (var x in Items)
                x.Dispose();
        }
    }
}

public sealed class HandshakeTests
{
    [Fact]
    public void GarbageAndWrongHandshakesAreRejectedAndTheRealPeerStillConnects()
    {
        var log = new ConcurrentQueue<string>();
        var intruders = new List<Socket>();
        long session = 0;
        using var ring = Ring.Create(2, TimeSpan.FromSeconds(10), (listeners, ringSession) =>
        {
            session = ringSession;
            var port = listeners[0].Port;
            Socket Open()
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                s.Connect(IPAddress.Loopback, port);
                intruders.Add(s);
                return s;
            }
            var hello = new byte[Wire.HandshakeSize];
            // Garbage that is not even the magic.
            Open().Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8);
            // A well-formed hello of another session (a stale worker of an earlier run).
            Wire.WriteHandshake(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session + 1000, 1, 0, 2));
            Open().Send(hello);
            // The right session but the wrong sender rank.
            Wire.WriteHandshake(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, 0, 0, 2));
            Open().Send(hello);
            // Magic followed by random bytes: fails the checksum.
            Wire.WriteHandshake(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, 1, 0, 2));
            new Random(5).NextBytes(hello.AsSpan(4));
            Open().Send(hello);
            // A peer of wire version 1 (32-byte hello, no nonce): refused at once, not left to time out.
            Wire.WriteHandshake(hello, new Wire.Handshake(1, Wire.KindHello, session, 1, 0, 2));
            Open().Send(hello.AsSpan(0, Wire.HandshakeSize));
            // A peer of wire version 2 (same handshake, but its weight frames lack the tag and the flags).
            var hello2 = new byte[RingHandshake.HelloSize];
            RingHandshake.WriteHello(hello2, new Wire.Handshake(2, Wire.KindHello, session, 1, 0, 2));
            Open().Send(hello2);
            // A peer of wire version 3 (same handshake, but its records lack the wire format).
            var hello3 = new byte[RingHandshake.HelloSize];
            RingHandshake.WriteHello(hello3, new Wire.Handshake(3, Wire.KindHello, session, 1, 0, 2));
            Open().Send(hello3);
            // A connection that sends half a hello and then nothing, and one that sends nothing: must not block anyone.
            Wire.WriteHandshake(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, 1, 0, 2));
            Open().Send(hello.AsSpan(0, 10));
            Open();
        }, log);
        try
        {
            Assert.Equal(session, ring.Session);
            var data = new[] { new float[] { 1, 2, 3 }, new float[] { 10, 20, 30 } };
            ring.Run((rank, r) => rank.AllReduceSum(data[r]));
            Assert.All(data, d => Assert.Equal([11f, 22f, 33f], d));

            var messages = log.ToArray();
            Assert.Contains(messages, m => m.Contains("bad magic"));
            Assert.Contains(messages, m => m.Contains($"session {session + 1000} (expected {session})"));
            Assert.Contains(messages, m => m.Contains("sender rank 0 (expected 1)"));
            Assert.Contains(messages, m => m.Contains("checksum"));
            Assert.Contains(messages, m => m.Contains($"protocol version 1 (expected {Wire.Version})"));
            Assert.Contains(messages, m => m.Contains("protocol version 2 (expected 4)"));
            Assert.Contains(messages, m => m.Contains("protocol version 3 (expected 4)"));
        }
        finally
        {
            foreach (var s in intruders)
                s.Dispose();
        }
    }
}
