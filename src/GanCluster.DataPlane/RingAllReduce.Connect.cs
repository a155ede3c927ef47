using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane;

public sealed partial class RingAllReduce
{
    // Most half-open candidates the accept loop tracks at once; a flood of junk connections cannot exhaust memory.
    private const int MaxPendingCandidates = 32;

    /// <summary>
    /// Builds the ring: connects to rank (rank+1)%n and accepts one connection from rank (rank−1+n)%n on
    /// <paramref name="listener"/>. Connections with the wrong magic, protocol version, session, ranks or world size
    /// (or garbage) are closed and reported through <paramref name="log"/>; the listener keeps waiting for the real
    /// peer until <paramref name="timeout"/>. The same timeout later bounds how long an operation waits for a
    /// silent peer.
    /// </summary>
    /// <exception cref="AllReduceException">The ring could not be formed within the timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled.</exception>
    public static RingAllReduce Connect(
        RingListener listener,
        long session,
        int rank,
        IReadOnlyList<RingPeer> peers,
        TimeSpan timeout,
        CancellationToken ct = default,
        Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(peers);
        if (timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), "The timeout must be positive.");
        var ordered = peers.OrderBy(p => p.Rank).ToArray();
        for (int i = 0; i < ordered.Length; i++)
            if (ordered[i].Rank != i)
                throw new ArgumentException("Peer ranks must be 0..n-1, each exactly once.", nameof(peers));
        if (rank < 0 || rank >= ordered.Length)
            throw new ArgumentOutOfRangeException(nameof(rank), $"Rank {rank} is not in 0..{ordered.Length - 1}.");
        ct.ThrowIfCancellationRequested();

        int n = ordered.Length;
        if (n == 1)
            return new RingAllReduce(rank, ordered, timeout, log, null, null);

        listener.Acquire();
        try
        {
            int next = (rank + 1) % n, prev = (rank - 1 + n) % n;
            long deadline = Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            // Connecting blocks (a synchronous connect keeps the socket in blocking mode, which the data path wants),
            // so it runs on its own thread while this one accepts.
            var connectTask = Task.Factory.StartNew(
                () => ConnectNext(ordered[next], session, rank, n, deadline, timeout, listener.SocketBufferBytes, cts.Token, log),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            Socket prevSocket;
            try
            {
                prevSocket = AcceptPrev(listener.Socket, ordered[prev], session, rank, n, deadline, timeout, cts.Token, log);
            }
            catch
            {
                cts.Cancel();
                try
                {
                    connectTask.GetAwaiter().GetResult().Dispose();
                }
                catch
                {
                    // The accept failure is the one to report.
                }
                throw;
            }

            Socket nextSocket;
            try
            {
                nextSocket = connectTask.GetAwaiter().GetResult();
            }
            catch
            {
                prevSocket.Dispose();
                throw;
            }
            SocketTuning.ApplyData(prevSocket, timeout);
            SocketTuning.ApplyData(nextSocket, timeout);
            return new RingAllReduce(rank, ordered, timeout, log, nextSocket, prevSocket);
        }
        finally
        {
            listener.Release();
        }
    }

    private sealed class HandshakeRejectedException(string message) : Exception(message);

    private static Socket ConnectNext(RingPeer peer, long session, int rank, int n, long deadline, TimeSpan timeout,
        int socketBufferBytes, CancellationToken ct, Action<string>? log)
    {
        string lastError = "no attempt made";
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
                throw new AllReduceException(
                    $"rank {rank} could not connect to {peer} within {timeout.TotalSeconds:0.###} s: {lastError}");

            Socket? socket = null;
            try
            {
                var endPoint = Resolve(peer);
                socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                var s = socket;
                using var unblock = ct.Register(() => Close(s));
                SocketTuning.ApplyBuffers(socket, socketBufferBytes);
                socket.Connect(endPoint);
                socket.NoDelay = true;
                socket.SendTimeout = socket.ReceiveTimeout = (int)Math.Max(1, deadline - Environment.TickCount64);

                Span<byte> hello = stackalloc byte[Wire.HandshakeSize];
                Wire.WriteHandshake(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, rank, peer.Rank, n));
                Wire.SendAll(socket, hello);

                Span<byte> ack = stackalloc byte[Wire.HandshakeSize];
                int got = Wire.ReceiveAll(socket, ack);
                if (got < ack.Length)
                    throw new HandshakeRejectedException(got == 0
                        ? "it closed the connection without an acknowledgement (handshake rejected)"
                        : $"it closed the connection after {got} bytes of the acknowledgement");
                var h = Wire.ReadHandshake(ack, out string? error) ?? throw new HandshakeRejectedException(error!);
                string? mismatch = Mismatch(h, Wire.KindAck, session, peer.Rank, rank, n);
                if (mismatch != null)
                    throw new HandshakeRejectedException($"bad acknowledgement: {mismatch}");
                return socket;
            }
            catch (Exception e) when (e is SocketException or HandshakeRejectedException or ObjectDisposedException)
            {
                socket?.Dispose();
                ct.ThrowIfCancellationRequested();
                lastError = e is SocketException se ? $"{se.SocketErrorCode} ({se.Message})" : e.Message;
                if (e is HandshakeRejectedException)
                    log?.Invoke($"rank {rank}: handshake with {peer} failed, retrying: {lastError}");
                // Refused or rejected: the peer may not be listening yet (or a stale process holds the port); retry.
                ct.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(Math.Clamp(deadline - Environment.TickCount64, 0, 20)));
            }
        }
    }

    private static IPEndPoint Resolve(RingPeer peer)
    {
        if (IPAddress.TryParse(peer.Host, out var ip))
            return new IPEndPoint(ip, peer.Port);
        var addresses = Dns.GetHostAddresses(peer.Host);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new SocketException((int)SocketError.HostNotFound);
        return new IPEndPoint(chosen, peer.Port);
    }

    private static string? Mismatch(in Wire.Handshake h, ushort kind, long session, int sender, int receiver, int n)
    {
        if (h.Version != Wire.Version)
            return $"protocol version {h.Version} (expected {Wire.Version})";
        if (h.Kind != kind)
            return $"message kind {h.Kind} (expected {kind})";
        if (h.Session != session)
            return $"session {h.Session} (expected {session})";
        if (h.WorldSize != n)
            return $"world size {h.WorldSize} (expected {n})";
        if (h.Sender != sender)
            return $"sender rank {h.Sender} (expected {sender})";
        if (h.Receiver != receiver)
            return $"receiver rank {h.Receiver} (expected {receiver})";
        return null;
    }

    private sealed class Candidate(Socket socket)
    {
        public Socket Socket { get; } = socket;
        public byte[] Buffer { get; } = new byte[Wire.HandshakeSize];
        public int Got { get; set; }
        public string Remote { get; } = socket.RemoteEndPoint?.ToString() ?? "?";
    }

    /// <summary>
    /// Accepts until a connection presents a valid hello from <paramref name="prev"/>. All candidates are read
    /// from one thread with Select, so a silent or slow junk connection cannot hold up the real peer.
    /// </summary>
    private static Socket AcceptPrev(Socket listener, RingPeer prev, long session, int rank, int n, long deadline,
        TimeSpan timeout, CancellationToken ct, Action<string>? log)
    {
        var pending = new List<Candidate>();
        int rejected = 0;

        void Reject(Candidate c, string reason)
        {
            rejected++;
            pending.Remove(c);
            c.Socket.Dispose();
            log?.Invoke($"rank {rank}: rejected connection from {c.Remote}: {reason}");
        }

        try
        {
            var readable = new List<Socket>();
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                    throw new AllReduceException(
                        $"rank {rank}: no valid connection from {prev} within {timeout.TotalSeconds:0.###} s " +
                        $"({rejected} connection(s) rejected)");

                readable.Clear();
                readable.Add(listener);
                foreach (var c in pending)
                    readable.Add(c.Socket);
                // Short slices only so that cancellation is noticed; readiness itself wakes Select at once.
                try
                {
                    Socket.Select(readable, null, null, (int)Math.Min(left, 50) * 1000);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    throw new AllReduceException($"rank {rank}: the ring listener failed while waiting for {prev}: {e.Message}", e);
                }

                foreach (var s in readable)
                {
                    if (s == listener)
                    {
                        Socket accepted;
                        try
                        {
                            accepted = listener.Accept();
                        }
                        catch (SocketException)
                        {
                            continue;
                        }
                        if (pending.Count >= MaxPendingCandidates)
                            Reject(pending[0], "too many unfinished handshakes");
                        pending.Add(new Candidate(accepted));
                        continue;
                    }

                    var candidate = pending.Find(c => c.Socket == s);
                    if (candidate == null)
                        continue;
                    string? reason = Pump(candidate, prev, session, rank, n);
                    if (reason == null)
                        continue; // Still incomplete.
                    if (reason.Length > 0)
                    {
                        Reject(candidate, reason);
                        continue;
                    }

                    try
                    {
                        candidate.Socket.SendTimeout = (int)Math.Max(1, deadline - Environment.TickCount64);
                        Span<byte> ack = stackalloc byte[Wire.HandshakeSize];
                        Wire.WriteHandshake(ack, new Wire.Handshake(Wire.Version, Wire.KindAck, session, rank, prev.Rank, n));
                        Wire.SendAll(candidate.Socket, ack);
                    }
                    catch (SocketException e)
                    {
                        Reject(candidate, $"could not acknowledge: {e.SocketErrorCode}");
                        continue;
                    }
                    pending.Remove(candidate);
                    return candidate.Socket;
                }
            }
        }
        finally
        {
            foreach (var c in pending)
                c.Socket.Dispose();
        }
    }

    /// <summary>Reads what is available of a candidate's hello: null = incomplete, "" = valid, else why it is rejected.</summary>
    private static string? Pump(Candidate c, RingPeer prev, long session, int rank, int n)
    {
        int got;
        try
        {
            int available = c.Socket.Available;
            if (available == 0)
                return c.Got == 0 ? "closed without sending a handshake" : $"closed after {c.Got} handshake bytes";
            got = c.Socket.Receive(c.Buffer, c.Got, Math.Min(available, Wire.HandshakeSize - c.Got), SocketFlags.None);
        }
        catch (SocketException e)
        {
            return $"socket error {e.SocketErrorCode}";
        }
        if (got == 0)
            return "closed during the handshake";
        c.Got += got;
        var bytes = c.Buffer.AsSpan(0, c.Got);
        if (!Wire.StartsWithHandshakeMagic(bytes))
            return "bad magic (garbage or not a GanCluster ring peer)";
        if (c.Got < Wire.HandshakeSize)
            return null;
        var h = Wire.ReadHandshake(bytes, out string? error);
        if (h == null)
            return error!;
        return Mismatch(h.Value, Wire.KindHello, session, prev.Rank, rank, n) ?? "";
    }
}
