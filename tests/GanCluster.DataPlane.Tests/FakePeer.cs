using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Tests;

/// <summary>Hand-driven halves of the version-2 handshake, for peers that the tests play themselves.</summary>
static class FakePeer
{
    public static byte[] Key(ReadOnlySpan<byte> secret, long session, IReadOnlyList<RingPeer> peers) =>
        RingHandshake.FormationKey(secret, session, peers.OrderBy(p => p.Rank).ToArray());

    public static byte[] InsecureKey(long session, IReadOnlyList<RingPeer> peers) => Key([], session, peers);

    /// <summary>Plays the acceptor of a connection from rank <paramref name="from"/>: reads hello, acknowledges, reads the proof.</summary>
    /// <returns>Whether the connector's proof verified under <paramref name="key"/> (false if it hung up first).</returns>
    public static bool Accept(Socket s, byte[] key, long session, int self, int from, int n)
    {
        var hello = new byte[RingHandshake.HelloSize];
        if (Wire.ReceiveAll(s, hello) < hello.Length)
            return false;
        var ack = new byte[RingHandshake.AckSize];
        RingHandshake.WriteAck(ack, new Wire.Handshake(Wire.Version, Wire.KindAck, session, self, from, n), key, hello);
        Wire.SendAll(s, ack);
        var proof = new byte[RingHandshake.ProofSize];
        return Wire.ReceiveAll(s, proof) == proof.Length && RingHandshake.VerifyProof(key, hello, ack, proof);
    }

    /// <summary>
    /// Plays the connector towards rank <paramref name="to"/> and, like a hostile peer would, sends its proof whether
    /// or not the acknowledgement verified. Returns the bytes it sent (hello ‖ proof) and whether the ack verified.
    /// </summary>
    public static (byte[] Sent, bool AckVerified) Connect(Socket s, byte[] key, long session, int self, int to, int n)
    {
        var hello = new byte[RingHandshake.HelloSize];
        RingHandshake.WriteHello(hello, new Wire.Handshake(Wire.Version, Wire.KindHello, session, self, to, n));
        Wire.SendAll(s, hello);
        var ack = new byte[RingHandshake.AckSize];
        Assert.Equal(ack.Length, Wire.ReceiveAll(s, ack));
        var verified = RingHandshake.VerifyAck(key, hello, ack);
        var proof = new byte[RingHandshake.ProofSize];
        RingHandshake.WriteProof(proof, key, hello, ack);
        Wire.SendAll(s, proof);
        return ([.. hello, .. proof], verified);
    }

    public static Socket Listen()
    {
        var l = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        l.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        l.Listen();
        return l;
    }

    public static Socket ConnectTo(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Connect(IPAddress.Loopback, port);
        return s;
    }

    public static int Port(Socket listener) => ((IPEndPoint)listener.LocalEndPoint!).Port;
}
