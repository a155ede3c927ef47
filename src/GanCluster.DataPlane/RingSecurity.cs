using System.Security.Cryptography;

namespace GanCluster.DataPlane;

/// <summary>
/// How a ring authenticates its members and whether it encrypts its traffic. Every rank of one ring must use the
/// same secret (and the same <see cref="Encrypt"/> setting). The handshake is always the authenticated one: with an
/// empty secret (<see cref="Insecure"/>) the key is derived from nothing, so it only binds the connection to the
/// formation (session, world size, peer list) and anyone who knows those can still join.
/// </summary>
public sealed class RingSecurity
{
    /// <summary>How long one connection may take to complete its handshake unless set otherwise.</summary>
    public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(5);

    readonly byte[] _secret;

    RingSecurity(byte[] secret, bool encrypt, TimeSpan handshakeTimeout)
    {
        _secret = secret;
        Encrypt = encrypt;
        HandshakeTimeout = handshakeTimeout;
    }

    /// <summary>No secret, no encryption: the handshake still runs, but proves nothing about who is on the other end.</summary>
    public static RingSecurity Insecure { get; } = new([], false, DefaultHandshakeTimeout);

    /// <summary>
    /// True when every gradient block (and frame header) is sealed with AES-256-GCM under per-connection keys.
    /// With an empty secret the keys are derivable by anyone who knows the formation: integrity against accidents only.
    /// </summary>
    public bool Encrypt { get; }

    /// <summary>True when a non-empty cluster secret is held (peers must prove they hold it too).</summary>
    public bool Authenticated => _secret.Length > 0;

    /// <summary>
    /// Longest time one incoming or outgoing connection may take to finish its handshake (the effective limit is
    /// the smaller of this and the Connect timeout). Connections that stay silent or stall halfway are dropped then.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; }

    /// <param name="clusterSecret">The shared cluster secret (copied); empty = unauthenticated, like <see cref="Insecure"/>.</param>
    /// <param name="encrypt">Encrypt and authenticate every block on the data connections.</param>
    public static RingSecurity FromSecret(ReadOnlySpan<byte> clusterSecret, bool encrypt) =>
        new(clusterSecret.ToArray(), encrypt, DefaultHandshakeTimeout);

    /// <summary>A copy with another per-connection handshake limit (must be positive).</summary>
    public RingSecurity WithHandshakeTimeout(TimeSpan handshakeTimeout)
    {
        if (handshakeTimeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(handshakeTimeout), "The handshake timeout must be positive.");
        return new RingSecurity(_secret, Encrypt, handshakeTimeout);
    }

    /// <summary>The formation key K: HKDF-SHA256 of the secret, bound to the session, the world size and every peer.</summary>
    internal byte[] FormationKey(long session, IReadOnlyList<RingPeer> ordered) =>
        RingHandshake.FormationKey(_secret, session, ordered);

    public override string ToString() =>
        $"RingSecurity({(Authenticated ? "authenticated" : "insecure")}, {(Encrypt ? "encrypted" : "not encrypted")})";
}
