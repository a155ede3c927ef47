using GanCluster.Actors.Security;
using GanCluster.Protocol;

namespace GanCluster.Cli;

/// <summary>
/// How a command talks to a cluster: it sends <see cref="RunProtocol"/> messages and reads the replies (and, once it
/// follows a run, the run's progress) in order. Two ways behind it: the Akka ClusterClient (<c>host:port</c>, inside the
/// cluster's network) and the seed's HTTP API (<c>https://host:port</c>, from anywhere a port-forward reaches).
/// </summary>
interface IClusterLink : IDisposable
{
    /// <summary>Where this link connects (for messages).</summary>
    string Receptionist { get; }
    void Send(IGanClusterMessage message);
    /// <summary>The first reply, or a usage error naming the address when the cluster cannot be reached.</summary>
    object First();
    /// <summary>The next message, <see cref="ClusterConnection.ContactLost"/> when contact was lost, or null after <paramref name="timeout"/>.</summary>
    object? Next(TimeSpan timeout);
    /// <summary>After <see cref="ClusterConnection.ContactLost"/>: start again (a following <c>WatchRun</c> re-attaches).</summary>
    void Reconnect();
}

static class ClusterLink
{
    /// <summary>Whether <paramref name="address"/> names the HTTP API (a URL) rather than Akka seeds (host:port).</summary>
    public static bool IsHttp(string address) =>
        address.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || address.StartsWith("http://", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The link for <paramref name="address"/>. Credentials are read only where used: plain <c>http://</c> (an insecure
    /// loopback seed) takes none.
    /// </summary>
    public static IClusterLink Open(string address, TimeSpan connectTimeout, Func<ClusterCredentials?> credentials)
    {
        if (!IsHttp(address)) return new ClusterConnection(address, connectTimeout, credentials());
        var uri = HttpClusterLink.ParseAddress(address);
        return new HttpClusterLink(uri, connectTimeout, uri.Scheme == Uri.UriSchemeHttps ? credentials() : null);
    }
}
