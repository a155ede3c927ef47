using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Bench;

/// <summary>
/// Hidden mode for the data-plane tests: a hostile process that knows a ring's session and peer list but not its
/// secret. It connects to <c>--target</c> as rank <c>--rank</c>, sends a well-formed hello, and then a proof made
/// with its own key (from <c>--secret-hex</c>, empty if absent), whether or not the acknowledgement verified.
/// Prints ACK-VERIFIED true|false, then REJECTED (exit 0) when the listener closes the connection, or NOT-REJECTED
/// (exit 3) when it keeps it open for <c>--wait</c> seconds.
/// Usage: --fake-peer --target HOST:PORT --session S --rank R --to T --peers HOST:PORT,HOST:PORT[,...] [--secret-hex HEX] [--wait 10]
/// </summary>
static class FakePeer
{
    public static int Run(string[] args)
    {
        var inv = CultureInfo.InvariantCulture;
        var a = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < args.Length; i += 2)
            a[args[i]] = args[i + 1];
        string Arg(string name) => a.TryGetValue(name, out var v) ? v : throw new ArgumentException($"--fake-peer needs {name}");

        var peers = Arg("--peers").Split(',').Select((hp, r) =>
        {
            var colon = hp.LastIndexOf(':');
            return new RingPeer(r, hp[..colon], int.Parse(hp[(colon + 1)..], inv));
        }).ToArray();
        var session = long.Parse(Arg("--session"), inv);
        int rank = int.Parse(Arg("--rank"), inv), to = int.Parse(Arg("--to"), inv);
        var secret = a.TryGetValue("--secret-hex", out var hex) ? Convert.FromHexString(hex) : [];
        var waitSeconds = a.TryGetValue("--wait", out var w) ? int.Parse(w, inv) : 10;
        var target = Arg("--target");
        var targetColon = target.LastIndexOf(':');

        var key = RingHandshake.FormationKey(secret, session, peers);
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(IPAddress.Parse(target[..targetColon]), int.Parse(target[(targetColon + 1)..], inv));
        s.ReceiveTimeout = waitSeconds * 1000;

        var hello = new byte[RingHandshake.HelloSize];
        RingHandshake.WriteHello(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, rank, to, peers.Length));
        Wire.SendAll(s, hello);
        var ack = new byte[RingHandshake.AckSize];
        if (Wire.ReceiveAll(s, ack) < ack.Length)
        {
            Console.WriteLine("REJECTED (no acknowledgement)");
            return 0;
        }
        Console.WriteLine($"ACK-VERIFIED {(RingHandshake.VerifyAck(key, hello, ack) ? "true" : "false")}");
        var proof = new byte[RingHandshake.ProofSize];
        RingHandshake.WriteProof(proof, key, hello, ack);
        Wire.SendAll(s, proof);
        Console.Out.Flush();
        try
        {
            if (s.Receive(new byte[1]) == 0)
            {
                Console.WriteLine("REJECTED");
                return 0;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset)
        {
            Console.WriteLine("REJECTED");
            return 0;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            // Kept open: accepted as a ring peer.
        }
        Console.WriteLine("NOT-REJECTED");
        return 3;
    }
}
