using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace GanCluster.DataPlane.Tests;

/// <summary>The ring's authenticated handshake, its limits on unfinished handshakes, and its optional encryption.</summary>
public sealed class SecurityTests
{
    static readonly byte[] SecretA = RandomNumberGenerator.GetBytes(32);
    static readonly byte[] SecretB = RandomNumberGenerator.GetBytes(32);

    static float[] Input(int rank, int length)
    {
        var random = new Random(4321 + rank * 7919 + length);
        var x = new float[length];
        for (var i = 0; i < length; i++)
            x[i] = (float)(random.NextDouble() * 2 - 1) * (1 + rank);
        return x;
    }

    static bool SameBits(float[] a, float[] b) =>
        MemoryMarshal.AsBytes(a.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(b.AsSpan()));

    static Task<T> OnThread<T>(Func<T> body) =>
        Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    static RingAllReduce[] ConnectAll(RingListener[] listeners, RingPeer[] peers, long session, RingSecurity security,
        TimeSpan timeout, ConcurrentQueue<string>? log = null) =>
        Ring.OnAllRanks(listeners.Length, r =>
            RingAllReduce.Connect(listeners[r], session, r, peers, timeout, log: log == null ? null : log.Enqueue, security: security));

    static void DisposeAll(IEnumerable<IDisposable> items)
    {
        foreach (var x in items)
            x.Dispose();
    }

    [Theory]
    [InlineData(2, 1_000_003)]   // several 1 MiB blocks per chunk (the sender thread's pipeline), not a multiple of n
    [InlineData(3, 1_000_003)]
    [InlineData(2, 20_001)]      // chunks small enough to go from the calling thread
    [InlineData(3, 20_001)]
    public void AuthenticatedAndEncryptedRingsAreBitIdenticalToTheInsecureRing(int n, int length)
    {
        var inputs = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
        var weights = Enumerable.Range(0, n).Select(r => 0.5 + r * 1.25).ToArray();

        (float[][] Sums, float[][] Means, double[] Totals, long Sent, bool Encrypted) Run(Func<int, RingSecurity>? security)
        {
            using var ring = Ring.Create(n, security: security);
            var sums = inputs.Select(x => (float[])x.Clone()).ToArray();
            ring.Run((rank, r) => rank.AllReduceSum(sums[r]));
            var sent = ring.Ranks[0].LastBytesSent;
            var means = inputs.Select(x => (float[])x.Clone()).ToArray();
            var totals = new double[n];
            ring.Run((rank, r) => totals[r] = rank.AllReduceWeightedMean(means[r], weights[r]));
            Assert.All(ring.Ranks, x => Assert.Equal(ring.Ranks[0].Encrypted, x.Encrypted));
            return (sums, means, totals, sent, ring.Ranks[0].Encrypted);
        }

        var plain = Run(null);
        var auth = Run(_ => RingSecurity.FromSecret(SecretA, encrypt: false));
        var encrypted = Run(_ => RingSecurity.FromSecret(SecretA, encrypt: true));
        Assert.False(plain.Encrypted);
        Assert.False(auth.Encrypted);
        Assert.True(encrypted.Encrypted);

        // The plain ring's result is right (against a double reference); the others match it bit for bit.
        for (var i = 0; i < length; i += 997)
        {
            var expected = inputs.Sum(x => (double)x[i]);
            Assert.True(Math.Abs(plain.Sums[0][i] - expected) <= 1e-5 * Math.Max(inputs.Sum(x => Math.Abs((double)x[i])), 1e-3));
        }
        foreach (var other in new[] { auth, encrypted })
            for (var r = 0; r < n; r++)
            {
                Assert.True(SameBits(plain.Sums[r], other.Sums[r]), $"sum differs on rank {r}");
                Assert.True(SameBits(plain.Means[r], other.Means[r]), $"weighted mean differs on rank {r}");
                Assert.Equal(BitConverter.DoubleToInt64Bits(plain.Totals[r]), BitConverter.DoubleToInt64Bits(other.Totals[r]));
            }

        // Authentication costs nothing per block; encryption adds one 16-byte tag per header and per block.
        Assert.Equal(plain.Sent, auth.Sent);
        Assert.True(encrypted.Sent > plain.Sent);
        Assert.Equal(0, (encrypted.Sent - plain.Sent) % RingAllReduce.TagBytes);
    }

    [Fact]
    public void RanksWithDifferentSecretsFailToFormWithTheAuthenticationMessage()
    {
        var listeners = Ring.StartListeners(2);
        try
        {
            var peers = Ring.PeersOf(listeners);
            var session = Ring.NewSession();
            var log = new ConcurrentQueue<string>();
            var errors = Ring.OnAllRanks(2, r =>
            {
                try
                {
                    RingAllReduce.Connect(listeners[r], session, r, peers, TimeSpan.FromSeconds(1.5), log: log.Enqueue,
                        security: RingSecurity.FromSecret(r == 0 ? SecretA : SecretB, encrypt: false)).Dispose();
                    return null;
                }
                catch (AllReduceException e)
                {
                    return e;
                }
            });
            Assert.All(errors, e => Assert.Contains(RingHandshake.AuthenticationFailed, Assert.IsType<AllReduceException>(e).Message));
            Assert.Contains(log, m => m.Contains("handshake with rank 1 (127.0.0.1:") && m.Contains(RingHandshake.AuthenticationFailed));
            Assert.Contains(log, m => m.Contains("handshake with rank 0 (127.0.0.1:") && m.Contains(RingHandshake.AuthenticationFailed));
        }
        finally
        {
            DisposeAll(listeners);
        }
    }

    /// <summary>A wrong acceptor: the real rank 0 connects to a rank 1 that acknowledges under another secret.</summary>
    [Fact]
    public async Task ConnectorRejectsAnAcceptorWithAnotherSecret()
    {
        using var listener = RingListener.Start(System.Net.IPAddress.Loopback);
        using var fakeListener = FakePeer.Listen();
        var session = Ring.NewSession();
        var peers = new[] { new RingPeer(0, "127.0.0.1", listener.Port), new RingPeer(1, "127.0.0.1", FakePeer.Port(fakeListener)) };
        var log = new ConcurrentQueue<string>();
        var connect = OnThread(() => RingAllReduce.Connect(listener, session, 0, peers, TimeSpan.FromSeconds(2), log: log.Enqueue,
            security: RingSecurity.FromSecret(SecretA, encrypt: false)));

        // The impostor answers every attempt with a correctly formed acknowledgement MAC'd under its own secret.
        var wrongKey = FakePeer.Key(SecretB, session, peers);
        var proofsReceived = 0;
        var impostor = OnThread(() =>
        {
            while (true)
            {
                Socket s;
                try
                {
                    s = fakeListener.Accept();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return 0;
                }
                using (s)
                {
                    try
                    {
                        if (FakePeer.Accept(s, wrongKey, session, 1, 0, 2))
                            Interlocked.Increment(ref proofsReceived);
                    }
                    catch (SocketException)
                    {
                        // Rank 0 gave up on this attempt (reset or cancelled at its deadline).
                    }
                }
            }
        });

        var e = await Assert.ThrowsAsync<AllReduceException>(() => connect);
        fakeListener.Dispose();
        await impostor;
        Assert.Contains("connecting to rank 1: ", e.Message);
        Assert.Contains(RingHandshake.AuthenticationFailed, e.Message[e.Message.IndexOf("connecting to rank 1: ", StringComparison.Ordinal)..]);
        Assert.Contains(log, m => m.Contains($"handshake with rank 1 (127.0.0.1:{peers[1].Port}) failed, retrying: {RingHandshake.AuthenticationFailed}"));
        // The real rank never sent a proof to the impostor.
        Assert.Equal(0, proofsReceived);
    }

    /// <summary>
    /// A wrong connector, as a separate process: it knows the session and the peer list but not the secret (once with
    /// no secret at all, once with another one) and sends a proof anyway. Rank 0 refuses it; the real rank 1 then joins.
    /// </summary>
    [Fact]
    public async Task FakePeerProcessWithoutTheSecretIsRejectedAndTheRealPeerStillJoins()
    {
        var listeners = Ring.StartListeners(2);
        try
        {
            var peers = Ring.PeersOf(listeners);
            var session = Ring.NewSession();
            var security = RingSecurity.FromSecret(SecretA, encrypt: false);
            var log = new ConcurrentQueue<string>();
            var rank0 = OnThread(() => RingAllReduce.Connect(listeners[0], session, 0, peers, TimeSpan.FromSeconds(30),
                log: log.Enqueue, security: security));

            foreach (var secretHex in new[] { null, Convert.ToHexString(SecretB) })
            {
                var (exitCode, output) = RunFakePeer(peers[0].Port, session, rank: 1, to: 0, peers, secretHex);
                Assert.True(exitCode == 0, $"fake peer exit code {exitCode}: {output}");
                Assert.Contains("ACK-VERIFIED false", output);
                Assert.Contains("REJECTED", output);
                Assert.DoesNotContain("NOT-REJECTED", output);
            }
            Assert.Equal(2, log.Count(m => m.Contains("rejected connection from") && m.Contains(RingHandshake.AuthenticationFailed)));

            using var ring1 = RingAllReduce.Connect(listeners[1], session, 1, peers, TimeSpan.FromSeconds(30), security: security);
            using var ring0 = await rank0;
            var data = new[] { Input(0, 1001), Input(1, 1001) };
            var expected = data[0].Zip(data[1], (a, b) => a + b).ToArray();
            var ranks = new[] { ring0, ring1 };
            Ring.OnAllRanks(2, r =>
            {
                ranks[r].AllReduceSum(data[r]);
                return 0;
            });
            Assert.All(data, d => Assert.True(SameBits(expected, d)));
        }
        finally
        {
            DisposeAll(listeners);
        }
    }

    static (int ExitCode, string Output) RunFakePeer(int port, long session, int rank, int to, RingPeer[] peers, string? secretHex)
    {
        // The bench is built next to this project (a build-order-only reference): .../src/GanCluster.DataPlane.Bench/bin/<config>/<tfm>/.
        var dir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = dir.Name, config = dir.Parent!.Name;
        var root = dir.Parent!.Parent!.Parent!.Parent!.Parent!.FullName;
        var dll = Path.Combine(root, "src", "GanCluster.DataPlane.Bench", "bin", config, tfm, "GanCluster.DataPlane.Bench.dll");
        Assert.True(File.Exists(dll), $"bench not built at {dll}");
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[]
                 {
                     dll, "--fake-peer", "--target", $"127.0.0.1:{port}", "--session", session.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "--rank", rank.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "--to", to.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "--peers", string.Join(',', peers.Select(p => $"{p.Host}:{p.Port}")), "--wait", "10",
                 })
            psi.ArgumentList.Add(a);
        if (secretHex != null)
        {
            psi.ArgumentList.Add("--secret-hex");
            psi.ArgumentList.Add(secretHex);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            Assert.Fail("the fake peer process hung");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>A hello and proof recorded (by a proxy) from a real handshake are replayed on a re-form of the same formation.</summary>
    [Fact]
    public async Task ReplayedHelloAndProofAreRefused()
    {
        var listeners = Ring.StartListeners(2);
        using var proxy = new TcpProxy(listeners[0].Port);
        try
        {
            // Rank 1 reaches rank 0 through the proxy (the advertised address), which records what rank 1 sends.
            var peers = new[] { new RingPeer(0, "127.0.0.1", proxy.Port), new RingPeer(1, "127.0.0.1", listeners[1].Port) };
            var session = Ring.NewSession();
            var security = RingSecurity.FromSecret(SecretA, encrypt: false);
            var log = new ConcurrentQueue<string>();
            var first = ConnectAll(listeners, peers, session, security, TimeSpan.FromSeconds(10), log);
            var data = new[] { new float[] { 1, 2 }, new float[] { 3, 4 } };
            Ring.OnAllRanks(2, r =>
            {
                first[r].AllReduceSum(data[r]);
                return 0;
            });
            Assert.All(data, d => Assert.Equal([4f, 6f], d));
            DisposeAll(first);
            var recorded = proxy.Upstream()[0];
            Assert.True(recorded.Length >= RingHandshake.HelloSize + RingHandshake.ProofSize);
            var replay = recorded.AsSpan(0, RingHandshake.HelloSize + RingHandshake.ProofSize).ToArray();

            // The same formation re-forms; an eavesdropper replays the recorded hello and proof at rank 0 first.
            var rank0 = OnThread(() => RingAllReduce.Connect(listeners[0], session, 0, peers, TimeSpan.FromSeconds(20),
                log: log.Enqueue, security: security));
            using (var attacker = FakePeer.ConnectTo(listeners[0].Port))
            {
                attacker.ReceiveTimeout = 10_000;
                Wire.SendAll(attacker, replay);
                var ack = new byte[RingHandshake.AckSize];
                Assert.Equal(ack.Length, Wire.ReceiveAll(attacker, ack));
                // The acknowledgement carries a fresh nonce, so the recorded proof does not match: rank 0 hangs up.
                Assert.Equal(0, Wire.ReceiveAll(attacker, new byte[1]));
            }
            Assert.Contains(log, m => m.Contains("rejected connection from") && m.Contains(RingHandshake.AuthenticationFailed));

            using var ring1 = RingAllReduce.Connect(listeners[1], session, 1, peers, TimeSpan.FromSeconds(20), security: security);
            using var ring0 = await rank0;
            var again = new[] { new float[] { 5 }, new float[] { 7 } };
            var ranks = new[] { ring0, ring1 };
            Ring.OnAllRanks(2, r =>
            {
                ranks[r].AllReduceSum(again[r]);
                return 0;
            });
            Assert.All(again, d => Assert.Equal([12f], d));
        }
        finally
        {
            DisposeAll(listeners);
        }
    }

    /// <summary>Closed by the other end (reading and discarding anything it sent first, e.g. an acknowledgement).</summary>
    static bool ClosedByPeer(Socket s)
    {
        try
        {
            while (s.Poll(0, SelectMode.SelectRead))
            {
                if (s.Available == 0)
                    return true;
                s.Receive(new byte[s.Available]);
            }
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    [Fact]
    public async Task SilentAndStalledConnectionsAreDroppedAndDoNotBlockTheRealPeer()
    {
        var limit = TimeSpan.FromSeconds(1);
        var timeout = TimeSpan.FromSeconds(20);
        var security = RingSecurity.FromSecret(SecretA, encrypt: false).WithHandshakeTimeout(limit);
        var listeners = Ring.StartListeners(2);
        var junk = new List<Socket>();
        try
        {
            var peers = Ring.PeersOf(listeners);
            var session = Ring.NewSession();
            var log = new ConcurrentQueue<string>();
            var hello = new byte[RingHandshake.HelloSize];
            RingHandshake.WriteHello(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, 1, 0, 2));
            Socket Open()
            {
                var s = FakePeer.ConnectTo(listeners[0].Port);
                junk.Add(s);
                return s;
            }
            // 40 silent connections, 5 that stop halfway through a hello, 3 that send a whole (well-formed) hello
            // and then never the proof: 48 unfinished handshakes against a cap of 32.
            for (var i = 0; i < 40; i++)
                Open();
            for (var i = 0; i < 5; i++)
                Open().Send(hello.AsSpan(0, 20));
            for (var i = 0; i < 3; i++)
                Open().Send(hello);

            var watch = Stopwatch.StartNew();
            var rank0 = OnThread(() => RingAllReduce.Connect(listeners[0], session, 0, peers, timeout, log: log.Enqueue, security: security));

            // Every one of them is dropped: past the cap at once, the rest after the handshake limit.
            Assert.True(SpinWait.SpinUntil(() => junk.All(ClosedByPeer), TimeSpan.FromSeconds(15)),
                $"{junk.Count(s => !ClosedByPeer(s))} junk connection(s) still open");
            Assert.Contains(log, m => m.Contains("too many unfinished handshakes"));
            Assert.Contains(log, m => m.Contains("did not complete its handshake within 1 s (0 of 48 hello bytes)"));
            Assert.Contains(log, m => m.Contains("did not complete its handshake within 1 s (20 of 48 hello bytes)"));
            Assert.Contains(log, m => m.Contains("did not complete its handshake within 1 s (acknowledged, 0 of 32 proof bytes)"));
            // Meanwhile rank 0's own attempt at rank 1 (which is not accepting yet) was bounded the same way and retried.
            Assert.True(SpinWait.SpinUntil(() => log.Any(m => m.Contains("handshake with rank 1") &&
                m.Contains("the handshake did not complete within 1 s")), TimeSpan.FromSeconds(10)));

            // Another 40 silent connections arrive just before the real peer, and stay open: it still joins.
            for (var i = 0; i < 40; i++)
                Open();
            using var ring1 = RingAllReduce.Connect(listeners[1], session, 1, peers, timeout, security: security);
            using var ring0 = await rank0;
            Assert.True(watch.Elapsed < timeout, $"formed after {watch.Elapsed}");
            var data = new[] { new float[] { 1.5f }, new float[] { 2.25f } };
            var ranks = new[] { ring0, ring1 };
            Ring.OnAllRanks(2, r =>
            {
                ranks[r].AllReduceSum(data[r]);
                return 0;
            });
            Assert.All(data, d => Assert.Equal([3.75f], d));
        }
        finally
        {
            DisposeAll(junk);
            DisposeAll(listeners);
        }
    }

    /// <summary>
    /// A proxy between rank 1 and rank 0 flips one bit of the first data block. Encrypted, rank 0 fails naming rank 1;
    /// unencrypted, the same flip goes through unnoticed and corrupts exactly one element of the sum.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void FlippedBitInTheDataStream(bool encrypt)
    {
        var listeners = Ring.StartListeners(2);
        // Past the handshake (hello + proof) and the first frame header (a sealed record when encrypting).
        long flipAt = RingHandshake.HelloSize + RingHandshake.ProofSize + Wire.HeaderSize + (encrypt ? RingAllReduce.TagBytes : 0) + 100;
        using var proxy = new TcpProxy(listeners[0].Port, flipAt);
        RingAllReduce[] ranks = [];
        try
        {
            var peers = new[] { new RingPeer(0, "127.0.0.1", proxy.Port), new RingPeer(1, "127.0.0.1", listeners[1].Port) };
            ranks = ConnectAll(listeners, peers, Ring.NewSession(), RingSecurity.FromSecret(SecretA, encrypt), TimeSpan.FromSeconds(10));
            const int length = 100_003;
            var inputs = new[] { Input(0, length), Input(1, length) };
            // Two floats add exactly the same in either order, so this is the ring's exact result.
            var expected = inputs[0].Zip(inputs[1], (a, b) => a + b).ToArray();
            var data = inputs.Select(x => (float[])x.Clone()).ToArray();
            var errors = Ring.OnAllRanks(2, r =>
            {
                try
                {
                    ranks[r].AllReduceSum(data[r]);
                    return null;
                }
                catch (AllReduceException e)
                {
                    return e;
                }
            });
            if (encrypt)
            {
                var e = Assert.IsType<AllReduceException>(errors[0]);
                Assert.Contains("failed authentication", e.Message);
                Assert.Contains($"rank 1 (127.0.0.1:{listeners[1].Port})", e.Message);
                Assert.IsType<AllReduceException>(errors[1]);
            }
            else
            {
                Assert.All(errors, Assert.Null);
                Assert.All(data, d => Assert.Single(d.Where((v, i) => BitConverter.SingleToInt32Bits(v) != BitConverter.SingleToInt32Bits(expected[i]))));
            }
        }
        finally
        {
            DisposeAll(ranks);
            DisposeAll(listeners);
        }
    }

    /// <summary>What a proxy captures contains a distinctive run of floats without encryption, and not with it.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EncryptionHidesThePlaintextFromAnEavesdropper(bool encrypt)
    {
        var listeners = Ring.StartListeners(2);
        using var proxy = new TcpProxy(listeners[0].Port);
        RingAllReduce[] ranks = [];
        try
        {
            var peers = new[] { new RingPeer(0, "127.0.0.1", proxy.Port), new RingPeer(1, "127.0.0.1", listeners[1].Port) };
            ranks = ConnectAll(listeners, peers, Ring.NewSession(), RingSecurity.FromSecret(SecretA, encrypt), TimeSpan.FromSeconds(10));
            float[] marker = [3.14159274f, -2.71828175f, 1.41421354f, 1234.5f, -0.000123f, 6.02214e23f];
            const int length = 600_000;
            var data = new[] { Input(0, length), Enumerable.Range(0, length).Select(i => marker[i % marker.Length]).ToArray() };
            var expected = data[0].Zip(data[1], (a, b) => a + b).ToArray();
            Ring.OnAllRanks(2, r =>
            {
                ranks[r].AllReduceSum(data[r]);
                return 0;
            });
            Assert.All(data, d => Assert.True(SameBits(expected, d)));

            var captured = proxy.Upstream()[0];
            Assert.True(captured.Length > length * sizeof(float) / 2, $"captured only {captured.Length} bytes");
            var found = captured.AsSpan().IndexOf(MemoryMarshal.AsBytes(marker.AsSpan())) >= 0;
            Assert.Equal(!encrypt, found);
        }
        finally
        {
            DisposeAll(ranks);
            DisposeAll(listeners);
        }
    }
}
