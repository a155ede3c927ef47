using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace GanCluster.DataPlane;

/// <summary>
/// The authenticated connection handshake (introduced with wire version 2, unchanged in 3 and 4; the labels keep "v2"). K = HKDF-SHA256(ikm = label ‖ cluster secret, info = formation).
/// <list type="number">
/// <item>connector → acceptor: hello (32-byte <see cref="Wire.Handshake"/>) ‖ nonce_c (16 random bytes)</item>
/// <item>acceptor → connector: ack (32 bytes) ‖ nonce_a (16) ‖ HMAC-SHA256(K, "ack" transcript)</item>
/// <item>connector → acceptor: HMAC-SHA256(K, "hello" transcript)</item>
/// </list>
/// A transcript is label ‖ hello ‖ ack ‖ nonce_c ‖ nonce_a. The acceptor's fresh nonce makes a recorded proof
/// useless on another connection; the distinct labels keep either side's MAC from standing in for the other's.
/// With encryption, the data key of the connection (connector → acceptor, the only direction that carries data) is
/// HKDF-SHA256(K, salt = nonce_c ‖ nonce_a).
/// </summary>
static class RingHandshake
{
    public const int NonceSize = 16;
    public const int MacSize = 32;
    public const int HelloSize = Wire.HandshakeSize + NonceSize;
    public const int AckSize = Wire.HandshakeSize + NonceSize + MacSize;
    public const int ProofSize = MacSize;
    public const int KeySize = 32;

    public const string AuthenticationFailed =
        "authentication failed: the peer does not hold this cluster's secret, or belongs to another formation";

    static readonly byte[] SecretLabel = "GanCluster ring v2 cluster secret"u8.ToArray();
    static readonly byte[] FormationLabel = "GanCluster ring v2 formation key"u8.ToArray();
    static readonly byte[] AckLabel = "GanCluster ring v2 ack"u8.ToArray();
    static readonly byte[] HelloLabel = "GanCluster ring v2 hello"u8.ToArray();
    static readonly byte[] DataLabel = "GanCluster ring v2 data connector to acceptor"u8.ToArray();

    public static byte[] FormationKey(ReadOnlySpan<byte> secret, long session, IReadOnlyList<RingPeer> ordered)
    {
        var info = new List<byte>(FormationLabel);
        var word = new byte[8];
        void Int(int v)
        {
            BinaryPrimitives.WriteInt32LittleEndian(word, v);
            info.AddRange(word.AsSpan(0, 4));
        }
        BinaryPrimitives.WriteInt64LittleEndian(word, session);
        info.AddRange(word);
        Int(ordered.Count);
        foreach (var p in ordered)
        {
            // Length-prefixed host, so that no two peer lists encode alike.
            var host = Encoding.UTF8.GetBytes(p.Host);
            Int(p.Rank);
            Int(host.Length);
            info.AddRange(host);
            Int(p.Port);
        }
        // The input keying material is a fixed label followed by the secret: never empty (OpenSSL's HKDF refuses an
        // empty or null key), and an empty secret still goes through the very same derivation.
        var ikm = new byte[SecretLabel.Length + secret.Length];
        SecretLabel.CopyTo(ikm, 0);
        secret.CopyTo(ikm.AsSpan(SecretLabel.Length));
        var key = new byte[KeySize];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, ikm, key, ReadOnlySpan<byte>.Empty, info.ToArray());
        CryptographicOperations.ZeroMemory(ikm);
        return key;
    }

    /// <summary>MAC over label ‖ hello ‖ ack ‖ nonce_c ‖ nonce_a; <paramref name="hello"/> and <paramref name="ack"/> start with the 48-byte message prefixes.</summary>
    static void Mac(byte[] key, byte[] label, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> ack, Span<byte> mac)
    {
        Span<byte> transcript = stackalloc byte[label.Length + 2 * Wire.HandshakeSize + 2 * NonceSize];
        label.CopyTo(transcript);
        var o = label.Length;
        hello[..Wire.HandshakeSize].CopyTo(transcript[o..]);
        o += Wire.HandshakeSize;
        ack[..Wire.HandshakeSize].CopyTo(transcript[o..]);
        o += Wire.HandshakeSize;
        hello.Slice(Wire.HandshakeSize, NonceSize).CopyTo(transcript[o..]);
        o += NonceSize;
        ack.Slice(Wire.HandshakeSize, NonceSize).CopyTo(transcript[o..]);
        HMACSHA256.HashData(key, transcript, mac);
    }

    /// <summary>Fills a 48-byte hello: the handshake fields and a fresh nonce.</summary>
    public static void WriteHello(Span<byte> hello, in Wire.Handshake h)
    {
        Wire.WriteHandshake(hello, h);
        RandomNumberGenerator.Fill(hello.Slice(Wire.HandshakeSize, NonceSize));
    }

    /// <summary>Fills an 80-byte acknowledgement of <paramref name="hello"/>: fields, a fresh nonce and the acceptor's MAC.</summary>
    public static void WriteAck(Span<byte> ack, in Wire.Handshake h, byte[] key, ReadOnlySpan<byte> hello)
    {
        Wire.WriteHandshake(ack, h);
        RandomNumberGenerator.Fill(ack.Slice(Wire.HandshakeSize, NonceSize));
        Mac(key, AckLabel, hello, ack, ack.Slice(Wire.HandshakeSize + NonceSize, MacSize));
    }

    /// <summary>Constant-time check of the acceptor's MAC in <paramref name="ack"/>.</summary>
    public static bool VerifyAck(byte[] key, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> ack)
    {
        Span<byte> expected = stackalloc byte[MacSize];
        Mac(key, AckLabel, hello, ack, expected);
        return CryptographicOperations.FixedTimeEquals(expected, ack.Slice(Wire.HandshakeSize + NonceSize, MacSize));
    }

    public static void WriteProof(Span<byte> proof, byte[] key, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> ack) =>
        Mac(key, HelloLabel, hello, ack, proof);

    /// <summary>Constant-time check of the connector's proof.</summary>
    public static bool VerifyProof(byte[] key, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> ack, ReadOnlySpan<byte> proof)
    {
        Span<byte> expected = stackalloc byte[MacSize];
        Mac(key, HelloLabel, hello, ack, expected);
        return CryptographicOperations.FixedTimeEquals(expected, proof);
    }

    /// <summary>The key that seals the connector → acceptor data stream of this connection.</summary>
    public static byte[] DataKey(byte[] key, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> ack)
    {
        Span<byte> salt = stackalloc byte[2 * NonceSize];
        hello.Slice(Wire.HandshakeSize, NonceSize).CopyTo(salt);
        ack.Slice(Wire.HandshakeSize, NonceSize).CopyTo(salt[NonceSize..]);
        var dataKey = new byte[KeySize];
        HKDF.DeriveKey(HashAlgorithmName.SHA256, key, dataKey, salt, DataLabel);
        return dataKey;
    }
}
