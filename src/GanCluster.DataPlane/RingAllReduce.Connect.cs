using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane;

public sealed partial class RingAllReduce
{
    // Most half-open candidates the accept loop tracks at once; a flood of junk connections cannot exhaust memory.
    const int MaxPendingCandidates = 32;

    /// <summary>
    /// Builds the ring: connects to rank (rank+1)%n and accepts one connection from rank (rank−1+n)%n on
    /// <paramref name="listener"/>. Both connections run the authenticated handshake (wire version 4, whose handshake is
    /// version 2's): each side proves with an HMAC under a key derived (HKDF-SHA256) from the cluster secret and this
    /// formation (session, world size, every peer's rank, host and port) that it holds the secret, over a transcript
    /// that includes a fresh random nonce from each side, so a recorded handshake cannot be replayed. A peer with another secret or
    /// another formation is rejected with an "authentication failed" message. Connections with the wrong magic,
    /// protocol version, session, ranks or world size (or garbage) are closed and reported through
    /// <paramref name="log"/>; so are connections that do not finish their handshake within
    /// min(<paramref name="timeout"/>, <see cref="RingSecurity.HandshakeTimeout"/>) (silent or stalled ones), and at
    /// most 32 unfinished handshakes are kept (the oldest is dropped), so held-open connections cannot block the real
    /// peer or a later re-form. The listener keeps waiting for the real peer, and the connector keeps retrying, until
    /// <paramref name="timeout"/>. The same timeout later bounds how long an operation waits for a silent peer.
    /// With <see cref="RingSecurity.Encrypt"/> every frame header and 1 MiB block is sealed with AES-256-GCM under
    /// per-connection keys and a per-direction counter nonce; any tampering fails the operation.
    /// </summary>
    /// <param name="listener">This rank's listener (advertised in <paramref name="peers"/>).</param>
    /// <param name="session">Id of this formation; every rank must pass the same one.</param>
    /// <param name="rank">This process's rank, 0..n−1.</param>
    /// <param name="peers">Every rank's listener address, each rank exactly once.</param>
    /// <param name="timeout">Limit for forming the ring, and later for a silent peer during an operation.</param>
    /// <param name="ct">Cancels forming the ring.</param>
    /// <param name="log">Receives rejected connections and retries.</param>
    /// <param name="security">The cluster secret and whether to encrypt; null = <see cref="RingSecurity.Insecure"/>.
    /// Every rank of the ring must use the same.</param>
    /// <param name="inlineStepBytes">Steps up to this size go from the calling thread (<see cref="InlineStepBytes"/>; 0 = never).</param>
    /// <param name="wire">How all-reduce sums travel (<see cref="RingWire"/>); every rank must pass the same, or the first
    /// all-reduce or all-gather fails on every rank naming both formats.</param>
    /// <exception cref="AllReduceException">The ring could not be formed within the timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled.</exception>
    public static RingAllReduce Connect(
        RingListener listener,
        long session,
        int rank,
        IReadOnlyList<RingPeer> peers,
        TimeSpan timeout,
        CancellationToken ct = default,
        Action<string>? log = null,
        RingSecurity? security = null,
        int inlineStepBytes = InlineStepBytes,
        RingWire wire = RingWire.Fp32)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(peers);
        security ??= RingSecurity.Insecure;
        if (timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), "The timeout must be positive.");
        if (inlineStepBytes is < 0 or > BlockBytes)
            throw new ArgumentOutOfRangeException(nameof(inlineStepBytes), $"Steps sent from the calling thread hold at most one block (0..{BlockBytes} bytes).");
        var ordered = peers.OrderBy(p => p.Rank).ToArray();
        for (var i = 0; i < ordered.Length; i++)
            if (ordered[i].Rank != i)
                throw new ArgumentException("Peer ranks must be 0..n-1, each exactly once.", nameof(peers));
        if (rank < 0 || rank >= ordered.Length)
            throw new ArgumentOutOfRangeException(nameof(rank), $"Rank {rank} is not in 0..{ordered.Length - 1}.");
        if (security.Encrypt && !System.Security.Cryptography.AesGcm.IsSupported)
            throw new PlatformNotSupportedException("AES-GCM is not available on this platform; the ring cannot encrypt.");
        if (!Enum.IsDefined(wire))
            throw new ArgumentOutOfRangeException(nameof(wire), wire, "Unknown wire format.");
        ct.ThrowIfCancellationRequested();

        var n = ordered.Length;
        if (n == 1)
            return new RingAllReduce(rank, ordered, timeout, log, null, null, security.Encrypt, null, null, inlineStepBytes, wire);

        var hs = new HandshakeContext(
            security.FormationKey(session, ordered), session, rank, n,
            (long)Math.Ceiling(Math.Min(timeout.TotalMilliseconds, security.HandshakeTimeout.TotalMilliseconds)),
            security.Encrypt, log);
        listener.Acquire();
        try
        {
            int next = (rank + 1) % n, prev = (rank - 1 + n) % n;
            var deadline = Environment.TickCount64 + (long)Math.Ceiling(timeout.TotalMilliseconds);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            // Connecting blocks (a synchronous connect keeps the socket in blocking mode, which the data path wants),
            // so it runs on its own thread while this one accepts.
            var connectTask = Task.Factory.StartNew(
                () => ConnectNext(ordered[next], hs, deadline, timeout, listener.SocketBufferBytes, cts.Token),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            Established prevConnection;
            try
            {
                prevConnection = AcceptPrev(listener.Socket, ordered[prev], hs, deadline, timeout, cts.Token);
            }
            catch
            {
                cts.Cancel();
                try
                {
                    connectTask.GetAwaiter().GetResult().Socket.Dispose();
                }
                catch
                {
                    // The accept failure is the one to report.
                }
                throw;
            }

            Established nextConnection;
            try
            {
                nextConnection = connectTask.GetAwaiter().GetResult();
            }
            catch
            {
                prevConnection.Socket.Dispose();
                throw;
            }
            SocketTuning.ApplyData(prevConnection.Socket, timeout);
            SocketTuning.ApplyData(nextConnection.Socket, timeout);
            return new RingAllReduce(rank, ordered, timeout, log, nextConnection.Socket, prevConnection.Socket,
                security.Encrypt, nextConnection.DataKey, prevConnection.DataKey, inlineStepBytes, wire);
        }
        finally
        {
            // Both handshake threads are done here (a failed accept waits for the connector before it rethrows).
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(hs.Key);
            listener.Release();
        }
    }

    sealed class HandshakeRejectedException(string message) : Exception(message);

    /// <summary>What both sides of the handshake need: the formation key and this rank's place.</summary>
    sealed record HandshakeContext(byte[] Key, long Session, int Rank, int Size, long LimitMs, bool Encrypt, Action<string>? Log)
    {
        volatile string? _connectorError;

        /// <summary>Why the connector's last attempt failed, so that a failed accept can report both directions.</summary>
        public string? ConnectorError
        {
            get => _connectorError;
            set => _connectorError = value;
        }
    }

    /// <summary>A connection whose handshake succeeded; the data key is set when the ring encrypts.</summary>
    readonly record struct Established(Socket Socket, byte[]? DataKey);

    static Established ConnectNext(RingPeer peer, HandshakeContext hs, long deadline, TimeSpan timeout,
        int socketBufferBytes, CancellationToken ct)
    {
        var lastError = "no attempt made";
        var authenticationFailed = false;
        var rank = hs.Rank;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var left = deadline - Environment.TickCount64;
            if (left <= 0)
                throw new AllReduceException(
                    $"rank {rank} could not connect to {peer} within {timeout.TotalSeconds:0.###} s: {hs.ConnectorError ?? lastError}");

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
                // Each attempt's handshake is bounded on its own: a stale or hostile process that accepts and then
                // stays silent costs one handshake limit, after which the connector tries again.
                var attemptEnd = Math.Min(deadline, Environment.TickCount64 + hs.LimitMs);

                var hello = new byte[RingHandshake.HelloSize];
                RingHandshake.WriteHello(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, hs.Session, rank, peer.Rank, hs.Size));
                socket.SendTimeout = (int)Math.Max(1, attemptEnd - Environment.TickCount64);
                Wire.SendAll(socket, hello);

                var ack = new byte[RingHandshake.AckSize];
                ReceiveHandshake(socket, ack.AsSpan(0, Wire.HandshakeSize), attemptEnd, "acknowledgement");
                var h = Wire.ReadHandshake(ack, out var error) ?? throw new HandshakeRejectedException(error!);
                var mismatch = Mismatch(h, Wire.KindAck, hs.Session, peer.Rank, rank, hs.Size);
                if (mismatch != null)
                    throw new HandshakeRejectedException($"bad acknowledgement: {mismatch}");
                ReceiveHandshake(socket, ack.AsSpan(Wire.HandshakeSize), attemptEnd, "acknowledgement");
                if (!RingHandshake.VerifyAck(hs.Key, hello, ack))
                    throw new HandshakeRejectedException(RingHandshake.AuthenticationFailed);

                var proof = new byte[RingHandshake.ProofSize];
                RingHandshake.WriteProof(proof, hs.Key, hello, ack);
                Wire.SendAll(socket, proof);
                return new Established(socket, hs.Encrypt ? RingHandshake.DataKey(hs.Key, hello, ack) : null);
            }
            catch (Exception e) when (e is SocketException or HandshakeRejectedException or ObjectDisposedException)
            {
                socket?.Dispose();
                ct.ThrowIfCancellationRequested();
                lastError = e switch
                {
                    SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock } =>
                        $"the handshake did not complete within {hs.LimitMs / 1000.0:0.###} s (a silent or stalled listener)",
                    SocketException se => $"{se.SocketErrorCode} ({se.Message})",
                    _ => e.Message,
                };
                // A failed authentication is the most telling error: later timeouts or refusals do not hide it.
                authenticationFailed |= e is HandshakeRejectedException && e.Message == RingHandshake.AuthenticationFailed;
                hs.ConnectorError = authenticationFailed && lastError != RingHandshake.AuthenticationFailed
                    ? $"{lastError} (an earlier attempt: {RingHandshake.AuthenticationFailed})"
                    : lastError;
                if (e is HandshakeRejectedException or SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock })
                    hs.Log?.Invoke($"rank {rank}: handshake with {peer} failed, retrying: {lastError}");
                // Refused or rejected: the peer may not be listening yet (or a stale process holds the port); retry.
                ct.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(Math.Clamp(deadline - Environment.TickCount64, 0, 20)));
            }
        }
    }

    /// <summary>Fills <paramref name="buffer"/> before <paramref name="end"/> (a TickCount64), or throws.</summary>
    static void ReceiveHandshake(Socket socket, Span<byte> buffer, long end, string what)
    {
        var got = 0;
        while (got < buffer.Length)
        {
            var left = end - Environment.TickCount64;
            if (left <= 0)
                throw new SocketException((int)SocketError.TimedOut);
            socket.ReceiveTimeout = (int)left;
            var n = socket.Receive(buffer[got..], SocketFlags.None);
            if (n == 0)
                throw new HandshakeRejectedException(got == 0
                    ? $"it closed the connection without an {what} (handshake rejected)"
                    : $"it closed the connection after {got} bytes of the {what}");
            got += n;
        }
    }

    static IPEndPoint Resolve(RingPeer peer)
    {
        if (IPAddress.TryParse(peer.Host, out var ip))
            return new IPEndPoint(ip, peer.Port);
        var addresses = Dns.GetHostAddresses(peer.Host);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new SocketException((int)SocketError.HostNotFound);
        return new IPEndPoint(chosen, peer.Port);
    }

    static string? Mismatch(in Wire.Handshake h, ushort kind, long session, int sender, int receiver, int n)
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

    enum Stage
    {
        // Waiting for the 48-byte hello; then (acknowledgement sent) waiting for the 32-byte proof.
        Hello,
        Proof,
    }

    sealed class Candidate(Socket socket, long started)
    {
        public Socket Socket { get; } = socket;
        public long Started { get; } = started;
        public Stage Stage { get; set; } = Stage.Hello;
        public byte[] Hello { get; } = new byte[RingHandshake.HelloSize];
        public byte[] Ack { get; } = new byte[RingHandshake.AckSize];
        public byte[] Proof { get; } = new byte[RingHandshake.ProofSize];
        public bool HeaderChecked { get; set; }
        public int Got { get; set; }
        public string Remote { get; } = socket.RemoteEndPoint?.ToString() ?? "?";

        public byte[] Buffer => Stage == Stage.Hello ? Hello : Proof;
    }

    /// <summary>
    /// Accepts until a connection completes the authenticated handshake as <paramref name="prev"/>. All candidates
    /// are read from one thread with Select and each is a small state machine (reading hello → acknowledgement sent →
    /// reading proof), so a silent, slow or stalled connection cannot hold up the real peer; each must finish within
    /// the handshake limit, and at most <see cref="MaxPendingCandidates"/> are kept.
    /// </summary>
    static Established AcceptPrev(Socket listener, RingPeer prev, HandshakeContext hs, long deadline,
        TimeSpan timeout, CancellationToken ct)
    {
        var pending = new List<Candidate>();
        int rejected = 0, unauthenticated = 0;
        var rank = hs.Rank;
        string? lastReason = null;

        void Reject(Candidate c, string reason)
        {
            rejected++;
            if (reason.Contains(RingHandshake.AuthenticationFailed, StringComparison.Ordinal))
                unauthenticated++;
            lastReason = reason;
            pending.Remove(c);
            // Logged before the close, so whoever sees the connection end also finds the reason in the log.
            hs.Log?.Invoke($"rank {rank}: rejected connection from {c.Remote}: {reason}");
            c.Socket.Dispose();
        }

        try
        {
            var readable = new List<Socket>();
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                var now = Environment.TickCount64;
                var left = deadline - now;
                if (left <= 0)
                    throw new AllReduceException(
                        $"rank {rank}: no valid connection from {prev} within {timeout.TotalSeconds:0.###} s " +
                        $"({rejected} connection(s) rejected" +
                        (unauthenticated > 0 && !lastReason!.Contains(RingHandshake.AuthenticationFailed, StringComparison.Ordinal)
                            ? $", {unauthenticated} of them because {RingHandshake.AuthenticationFailed}" : "") +
                        (lastReason == null ? ")" : $"; the last because {lastReason})") +
                        (hs.ConnectorError is { } connectorError ? $"; connecting to rank {(rank + 1) % hs.Size}: {connectorError}" : ""));

                foreach (var c in pending.Where(c => now - c.Started >= hs.LimitMs).ToArray())
                    Reject(c, $"did not complete its handshake within {hs.LimitMs / 1000.0:0.###} s " +
                              $"({(c.Stage == Stage.Hello ? $"{c.Got} of {RingHandshake.HelloSize} hello bytes" : $"acknowledged, {c.Got} of {RingHandshake.ProofSize} proof bytes")})");

                readable.Clear();
                readable.Add(listener);
                var wait = Math.Min(left, 50);
                foreach (var c in pending)
                {
                    readable.Add(c.Socket);
                    wait = Math.Min(wait, Math.Max(1, c.Started + hs.LimitMs - now));
                }
                // Short slices only so that cancellation and handshake limits are noticed; readiness wakes Select at once.
                try
                {
                    Socket.Select(readable, null, null, (int)wait * 1000);
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
                        {
                            // The oldest one that has not even presented a valid hello goes first.
                            var victim = pending.FirstOrDefault(c => c.Stage == Stage.Hello) ?? pending[0];
                            Reject(victim, "too many unfinished handshakes (dropped the oldest)");
                        }
                        pending.Add(new Candidate(accepted, Environment.TickCount64));
                        continue;
                    }

                    var candidate = pending.Find(c => c.Socket == s);
                    if (candidate == null)
                        continue;
                    var reason = Pump(candidate, prev, hs);
                    if (reason == null)
                        continue; // Still incomplete.
                    if (reason.Length > 0)
                    {
                        Reject(candidate, reason);
                        continue;
                    }

                    if (candidate.Stage == Stage.Hello)
                    {
                        // A well-formed hello: acknowledge with our nonce and MAC, then wait for the proof.
                        try
                        {
                            candidate.Socket.SendTimeout = (int)Math.Max(1, Math.Min(hs.LimitMs, deadline - Environment.TickCount64));
                            RingHandshake.WriteAck(candidate.Ack,
                                new Wire.Handshake(Wire.Version, Wire.KindAck, hs.Session, rank, prev.Rank, hs.Size), hs.Key, candidate.Hello);
                            Wire.SendAll(candidate.Socket, candidate.Ack);
                        }
                        catch (SocketException e)
                        {
                            Reject(candidate, $"could not acknowledge: {e.SocketErrorCode}");
                            continue;
                        }
                        candidate.Stage = Stage.Proof;
                        candidate.Got = 0;
                        continue;
                    }

                    if (!RingHandshake.VerifyProof(hs.Key, candidate.Hello, candidate.Ack, candidate.Proof))
                    {
                        Reject(candidate, RingHandshake.AuthenticationFailed);
                        continue;
                    }
                    pending.Remove(candidate);
                    return new Established(candidate.Socket,
                        hs.Encrypt ? RingHandshake.DataKey(hs.Key, candidate.Hello, candidate.Ack) : null);
                }
            }
        }
        finally
        {
            foreach (var c in pending)
                c.Socket.Dispose();
        }
    }

    /// <summary>
    /// Reads what is available of the candidate's current message: null = incomplete, "" = complete (and, for a hello,
    /// well-formed), else why it is rejected.
    /// </summary>
    static string? Pump(Candidate c, RingPeer prev, HandshakeContext hs)
    {
        var buffer = c.Buffer;
        int got;
        try
        {
            var available = c.Socket.Available;
            if (available == 0)
                return c.Stage == Stage.Proof
                    ? $"closed after our authenticated acknowledgement without a proof (it could not verify it: {RingHandshake.AuthenticationFailed})"
                    : c.Got == 0 ? "closed without sending a handshake" : $"closed after {c.Got} handshake bytes";
            got = c.Socket.Receive(buffer, c.Got, Math.Min(available, buffer.Length - c.Got), SocketFlags.None);
        }
        catch (SocketException e)
        {
            return $"socket error {e.SocketErrorCode}";
        }
        if (got == 0)
            return "closed during the handshake";
        c.Got += got;
        if (c.Stage == Stage.Proof)
            return c.Got < buffer.Length ? null : "";

        var bytes = buffer.AsSpan(0, c.Got);
        if (!Wire.StartsWithHandshakeMagic(bytes))
            return "bad magic (garbage or not a GanCluster ring peer)";
        if (!c.HeaderChecked && c.Got >= Wire.HandshakeSize)
        {
            // Check the fields as soon as they are in (an old-version peer sends no nonce and would otherwise stall).
            var h = Wire.ReadHandshake(bytes, out var error);
            if (h == null)
                return error!;
            var mismatch = Mismatch(h.Value, Wire.KindHello, hs.Session, prev.Rank, hs.Rank, hs.Size);
            if (mismatch != null)
                return mismatch;
            c.HeaderChecked = true;
        }
        return c.Got < buffer.Length ? null : "";
    }
}
