using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;
using GanCluster.DataPlane;

namespace GanCluster.Actors.Security;

/// <summary>
/// What makes a process a member (or a client) of one GanCluster cluster: a folder with the cluster's certificate and
/// private key (<c>cluster.pfx</c>, for mutual TLS on Akka.Remote, pinned by its SHA-256 thumbprint) and a random
/// secret (<c>cluster.secret</c>, from which the gradient ring's handshake key is derived). Every node and every client
/// of the cluster holds the same folder; anyone without it cannot connect.
/// </summary>
public sealed class ClusterCredentials
{
    public const string CertificateFile = "cluster.pfx";
    public const string SecretFile = "cluster.secret";
    /// <summary>Where the CLI and the scripts look when no folder is named.</summary>
    public const string EnvironmentVariable = "GANCLUSTER_CREDENTIALS";
    const int SecretBytes = 32;

    ClusterCredentials(string folder, X509Certificate2 certificate, byte[] secret)
    {
        Folder = folder;
        Certificate = certificate;
        Secret = secret;
        Thumbprint = certificate.GetCertHashString(HashAlgorithmName.SHA256);
    }

    public string Folder { get; }
    public X509Certificate2 Certificate { get; }
    /// <summary>SHA-256 of the certificate: a peer must present exactly this certificate.</summary>
    public string Thumbprint { get; }
    byte[] Secret { get; }

    /// <summary>What <see cref="HttpToken"/> is the HMAC of: a label, so that the token is good for the HTTP API only.</summary>
    const string HttpTokenLabel = "gancluster-http-token/v1";

    /// <summary>
    /// The bearer token of the seed's HTTP API (<c>gancluster certs token</c>): base64url of HMAC-SHA256(cluster.secret,
    /// "gancluster-http-token/v1"). Whoever holds the credentials folder can compute it; it reveals nothing of the secret.
    /// </summary>
    public string HttpToken() =>
        System.Buffers.Text.Base64Url.EncodeToString(HMACSHA256.HashData(Secret, System.Text.Encoding.ASCII.GetBytes(HttpTokenLabel)));

    /// <summary>Whether <paramref name="token"/> is <see cref="HttpToken"/>, compared in constant time.</summary>
    public bool IsHttpToken(string? token) =>
        token is not null && CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(token), System.Text.Encoding.ASCII.GetBytes(HttpToken()));

    /// <summary>Whether <paramref name="certificate"/> is this cluster's (its SHA-256 is the pin), compared in constant time.</summary>
    public bool IsClusterCertificate(X509Certificate? certificate) =>
        certificate is not null && CryptographicOperations.FixedTimeEquals(certificate.GetCertHash(HashAlgorithmName.SHA256), Certificate.GetCertHash(HashAlgorithmName.SHA256));

    /// <summary>The gradient ring's handshake key material (and, with Node:RingEncryption, its encryption).</summary>
    public RingSecurity Ring(bool encrypt) => RingSecurity.FromSecret(Secret, encrypt);

    /// <summary>
    /// Creates the folder's certificate (self-signed ECDSA P-256, valid <paramref name="days"/> days) and secret,
    /// readable by the owner only. Refuses to replace existing material unless <paramref name="force"/>: every node
    /// would have to be given the new folder.
    /// </summary>
    public static ClusterCredentials Create(string folder, string name, int days, bool force = false)
    {
        if (days < 1) throw new CredentialsException($"--days must be at least 1 (got {days})");
        var full = Path.GetFullPath(folder);
        var certPath = Path.Combine(full, CertificateFile);
        var secretPath = Path.Combine(full, SecretFile);
        if (!force && (File.Exists(certPath) || File.Exists(secretPath)))
            throw new CredentialsException($"{full} already holds cluster credentials; every node and client uses them. Use --force to replace them (then give every node the new folder)");
        Directory.CreateDirectory(full);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(full, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN=GanCluster cluster {name}, O=GanCluster", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        // Each node is both a TLS server (it accepts) and a TLS client (it connects).
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(days));
        WritePrivate(certPath, certificate.Export(X509ContentType.Pkcs12));
        WritePrivate(secretPath, System.Text.Encoding.ASCII.GetBytes(Convert.ToBase64String(RandomNumberGenerator.GetBytes(SecretBytes)) + "\n"));
        return Load(full);
    }

    static void WritePrivate(string path, byte[] bytes)
    {
        // Created owner-only before anything is written: the key is never readable by others, not even briefly.
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var stream = new FileStream(path, options);
        stream.Write(bytes);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>Reads a credentials folder; every problem comes back as one message naming the file.</summary>
    public static ClusterCredentials Load(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
            throw new CredentialsException($"{full} does not exist (create the cluster's credentials with: gancluster certs create --out {folder})");
        var certPath = Path.Combine(full, CertificateFile);
        var secretPath = Path.Combine(full, SecretFile);
        foreach (var f in new[] { certPath, secretPath })
            if (!File.Exists(f)) throw new CredentialsException($"{f} is missing: a credentials folder holds {CertificateFile} and {SecretFile} (made by gancluster certs create)");

        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadPkcs12FromFile(certPath, null, X509KeyStorageFlags.EphemeralKeySet);
        }
        catch (CryptographicException e)
        {
            throw new CredentialsException($"{certPath} is not a readable PKCS#12 certificate: {e.Message}");
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CredentialsException($"{certPath} cannot be read: {e.Message}");
        }
        if (!certificate.HasPrivateKey)
            throw new CredentialsException($"{certPath} holds no private key");
        var now = DateTime.Now;
        if (now > certificate.NotAfter)
            throw new CredentialsException($"{certPath} expired on {certificate.NotAfter:yyyy-MM-dd}; create new credentials and give them to every node");
        if (now < certificate.NotBefore)
            throw new CredentialsException($"{certPath} is not valid before {certificate.NotBefore:yyyy-MM-dd HH:mm} (is this machine's clock right?)");

        byte[] secret;
        try
        {
            secret = Convert.FromBase64String(File.ReadAllText(secretPath).Trim());
        }
        catch (FormatException)
        {
            throw new CredentialsException($"{secretPath} must hold one base64 line");
        }
        if (secret.Length < 16) throw new CredentialsException($"{secretPath} holds {secret.Length} bytes; at least 16 are needed");
        return new ClusterCredentials(full, certificate, secret);
    }

    /// <summary>Owner-only files, as created; a warning when others can read the key or the secret.</summary>
    public IEnumerable<string> Warnings()
    {
        if (OperatingSystem.IsWindows()) yield break;
        foreach (var f in new[] { CertificateFile, SecretFile })
        {
            var mode = File.GetUnixFileMode(Path.Combine(Folder, f));
            if ((mode & (UnixFileMode.GroupRead | UnixFileMode.OtherRead)) != 0)
                yield return $"{Path.Combine(Folder, f)} is readable by other users (chmod 600 it): whoever reads it can join the cluster";
        }
    }

    /// <summary>
    /// Accepts a TLS peer only when it presents this cluster's certificate: both sides of every Akka.Remote
    /// connection check it (mutual TLS). The certificate is self-signed, so the pin replaces a CA chain.
    /// </summary>
    /// <param name="refused">Also told why a peer was refused (the CLI, whose Akka logging is off, explains its failure with it).</param>
    public CertificateValidationCallback Validator(Action<string>? refused = null) => (certificate, _, remotePeer, _, log) =>
    {
        string? why = null;
        if (certificate is null) why = "it presented no certificate (not a member of this cluster)";
        else if (!string.Equals(certificate.GetCertHashString(HashAlgorithmName.SHA256), Thumbprint, StringComparison.OrdinalIgnoreCase))
            why = $"its certificate ({certificate.Subject}) is not this cluster's";
        if (why is null) return true;
        log.Warning("gancluster: refused a TLS connection with {0}: {1}", remotePeer, why);
        refused?.Invoke($"{remotePeer}: {why}");
        return false;
    };

    /// <summary>For a plain ActorSystem (<see cref="ClusterHocon.CreateSystem"/>): the certificate, mutual authentication and the pin.</summary>
    public DotNettySslSetup SslSetup(Action<string>? refused = null) =>
        new(Certificate, suppressValidation: false, requireMutualAuthentication: true, customValidator: Validator(refused));
}

/// <summary>A credentials folder that cannot be used, or a request the certs command cannot carry out.</summary>
public sealed class CredentialsException(string message) : Exception(message);
