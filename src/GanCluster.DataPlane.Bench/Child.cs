using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Bench;

/// <summary>A worker process: builds the ring (or a plain socket pair) from the coordinator's address list and times it.</summary>
static class Child
{
    public static int Run(Options o)
    {
        var parts = (o.Rendezvous ?? throw new ArgumentException("--rendezvous is required in child mode")).Split(':');
        var control = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        control.Connect(IPAddress.Parse(parts[0]), int.Parse(parts[1], CultureInfo.InvariantCulture));
        using var channel = new ControlChannel(control, o.Timeout * 4);
        try
        {
            switch (o.ChildMode)
            {
                case "ring":
                    RunRing(o, channel);
                    break;
                case "raw-copy":
                    RunRaw(o, channel);
                    break;
                case "raw-duplex":
                    RunDuplex(o, channel);
                    break;
                default:
                    throw new ArgumentException($"unknown child mode {o.ChildMode}");
            }
            channel.Receive("BYE");
            return 0;
        }
        catch (Exception e) when (e is not ArgumentException)
        {
            Console.Error.WriteLine($"worker {o.Rank}: {e}");
            try
            {
                channel.Send("ERROR rank " + o.Rank + ": " + e.Message.ReplaceLineEndings(" "));
            }
            catch (Exception)
            {
                // The coordinator is gone too; the exit code says enough.
            }
            return 1;
        }
    }

    static void RunRing(Options o, ControlChannel channel)
    {
        using var listener = RingListener.Start(IPAddress.Loopback, socketBufferBytes: o.SocketBufferBytes);
        channel.Send($"READY {o.Rank} {listener.Port}");
        var peersLine = channel.Receive("PEERS").Split(' ');
        var session = long.Parse(peersLine[0], CultureInfo.InvariantCulture);
        var peers = peersLine[1].Split(',')
            .Select((port, r) => new RingPeer(r, "127.0.0.1", int.Parse(port, CultureInfo.InvariantCulture)))
            .ToArray();
        var mode = o.Security.Single();
        RingSecurity? security = null;
        if (mode != "plain")
        {
            var secret = Convert.FromHexString(Environment.GetEnvironmentVariable(Options.SecretVariable)
                ?? throw new ArgumentException($"{Options.SecretVariable} is not set (the coordinator passes the ring secret)"));
            security = RingSecurity.FromSecret(secret, encrypt: mode == "encrypt");
        }
        using var ring = RingAllReduce.Connect(listener, session, o.Rank, peers, o.Timeout,
            log: m => Console.Error.WriteLine($"worker {o.Rank}: {m}"), security: security, inlineStepBytes: o.InlineStepBytes,
            wire: RingWires.Parse(o.Wires.Single()));
        if (ring.Encrypted != (mode == "encrypt"))
            throw new InvalidOperationException($"the ring's encryption ({ring.Encrypted}) is not what --security {mode} asked for");

        var data = new float[o.Bytes / sizeof(float)];
        var barrier = new float[1];
        var n = peers.Length;
        // Ranks hold 1..n: their sum, or with --busy-ms their mean (equal weights); exact in bf16 too.
        var expected = o.BusyMs > 0 ? (n + 1) / 2f : n * (n + 1) / 2f;
        var busy = (long)(o.BusyMs * Stopwatch.Frequency / 1000);
        var times = new List<double>();
        var correct = true;
        long sent = 0, received = 0;
        for (var it = 0; it < o.Warmup + o.Iterations; it++)
        {
            Array.Fill(data, o.Rank + 1f);
            var start = Stopwatch.GetTimestamp();
            if (busy > 0)
            {
                // A worker's update: compute, then average; the timed call includes waiting for the other ranks.
                for (var until = start + busy; Stopwatch.GetTimestamp() < until;)
                {
                }
                start = Stopwatch.GetTimestamp();
                ring.AllReduceMean(data, 1.0, it);
            }
            else
            {
                // A one-float all-reduce lines the ranks up, so that the timed call measures transfer, not skew.
                ring.AllReduceSum(barrier);
                start = Stopwatch.GetTimestamp();
                ring.AllReduceSum(data);
            }
            var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            correct &= data[0] == expected && data[^1] == expected && data[data.Length / 2] == expected;
            if (it >= o.Warmup)
                times.Add(ms);
            sent = ring.LastBytesSent;
            received = ring.LastBytesReceived;
        }
        channel.Send(Result(correct, sent, received, times));
    }

    static void RunRaw(Options o, ControlChannel channel)
    {
        var buffer = new byte[o.Bytes];
        if (o.Rank == 0)
        {
            // Receiver.
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            Tune(listener, o);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen();
            channel.Send($"READY 0 {((IPEndPoint)listener.LocalEndPoint!).Port}");
            channel.Receive("PEERS");
            using var s = listener.Accept();
            s.ReceiveTimeout = (int)o.Timeout.TotalMilliseconds;
            for (var it = 0; it < o.Warmup + o.Iterations; it++)
            {
                var got = 0;
                while (got < buffer.Length)
                {
                    var n = s.Receive(buffer.AsSpan(got, Math.Min(1 << 20, buffer.Length - got)));
                    if (n == 0)
                        throw new IOException("sender closed early");
                    got += n;
                }
                s.Send([1]);
            }
            channel.Send(Result(true, 0, (long)buffer.Length, []));
        }
        else
        {
            // Sender: times S bytes out plus a one-byte acknowledgement back.
            channel.Send($"READY 1 0");
            var peersLine = channel.Receive("PEERS").Split(' ');
            var port = int.Parse(peersLine[1].Split(',')[0], CultureInfo.InvariantCulture);
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            Tune(s, o);
            s.Connect(IPAddress.Loopback, port);
            s.ReceiveTimeout = (int)o.Timeout.TotalMilliseconds;
            Array.Fill(buffer, (byte)7);
            var ack = new byte[1];
            var times = new List<double>();
            for (var it = 0; it < o.Warmup + o.Iterations; it++)
            {
                var start = Stopwatch.GetTimestamp();
                var off = 0;
                while (off < buffer.Length)
                    off += s.Send(buffer.AsSpan(off));
                if (s.Receive(ack) != 1)
                    throw new IOException("receiver closed early");
                var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (it >= o.Warmup)
                    times.Add(ms);
            }
            channel.Send(Result(true, buffer.Length, 0, times));
        }
    }

    /// <summary>
    /// Both workers send S bytes to each other at once over one connection: the traffic of a 2-worker ring all-reduce
    /// (each process sends and receives S) without the framing, the adds and the pipelining.
    /// </summary>
    static void RunDuplex(Options o, ControlChannel channel)
    {
        var outgoing = new byte[o.Bytes];
        var incoming = new byte[o.Bytes];
        Array.Fill(outgoing, (byte)o.Rank);
        Socket s;
        if (o.Rank == 0)
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            Tune(listener, o);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen();
            channel.Send($"READY 0 {((IPEndPoint)listener.LocalEndPoint!).Port}");
            channel.Receive("PEERS");
            s = listener.Accept();
        }
        else
        {
            channel.Send("READY 1 0");
            var peersLine = channel.Receive("PEERS").Split(' ');
            s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            Tune(s, o);
            s.Connect(IPAddress.Loopback, int.Parse(peersLine[1].Split(',')[0], CultureInfo.InvariantCulture));
        }
        using (s)
        {
            s.NoDelay = true;
            s.ReceiveTimeout = s.SendTimeout = (int)o.Timeout.TotalMilliseconds;
            var times = new List<double>();
            for (var it = 0; it < o.Warmup + o.Iterations; it++)
            {
                var start = Stopwatch.GetTimestamp();
                var send = Task.Factory.StartNew(() =>
                {
                    var off = 0;
                    while (off < outgoing.Length)
                        off += s.Send(outgoing.AsSpan(off, Math.Min(1 << 20, outgoing.Length - off)));
                }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                var got = 0;
                while (got < incoming.Length)
                {
                    var n = s.Receive(incoming.AsSpan(got, Math.Min(1 << 20, incoming.Length - got)));
                    if (n == 0)
                        throw new IOException("peer closed early");
                    got += n;
                }
                send.GetAwaiter().GetResult();
                var ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (it >= o.Warmup)
                    times.Add(ms);
            }
            channel.Send(Result(true, outgoing.Length, incoming.Length, times));
        }
    }

    /// <summary>The same socket options as the ring's data connections, so that the comparison is like for like.</summary>
    static void Tune(Socket s, Options o)
    {
        s.NoDelay = true;
        if (o.SocketBufferBytes > 0)
        {
            s.SendBufferSize = o.SocketBufferBytes;
            s.ReceiveBufferSize = o.SocketBufferBytes;
        }
    }

    static string Result(bool correct, long sent, long received, IEnumerable<double> times) =>
        string.Create(CultureInfo.InvariantCulture,
            $"RESULT {(correct ? "ok" : "WRONG")} {sent} {received} {string.Join(',', times.Select(t => t.ToString("0.####", CultureInfo.InvariantCulture)))}");
}
