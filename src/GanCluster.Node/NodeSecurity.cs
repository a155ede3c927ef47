using Akka.Hosting;
using Akka.Remote.Hosting;
using GanCluster.Actors.Security;
using Microsoft.Extensions.Logging;

namespace GanCluster.Node;

/// <summary>Who may talk to this node: the cluster's credentials (mutual TLS on Akka.Remote), or loudly nobody checks.</summary>
static class NodeSecurity
{
    /// <summary>The credentials of Node:Credentials, or null with a warning on every line of the log's start when Node:Insecure.</summary>
    public static ClusterCredentials? Load(NodeOptions options, ILogger log)
    {
        if (options.Insecure)
        {
            log.LogWarning("WARNING: Node:Insecure=true: no TLS and no authentication. Anyone who can reach " +
                           "this node's ports can join this cluster, submit, cancel and download runs, and read or alter gradients.");
            return null;
        }
        var credentials = ClusterCredentials.Load(options.Credentials!);
        foreach (var w in credentials.Warnings()) log.LogWarning("{Warning}", w);
        log.LogInformation("mutual TLS with the cluster certificate {Thumbprint}… from {Folder}; {Ring}", credentials.Thumbprint[..16], credentials.Folder,
            options.RingEncryption ? "gradient ring authenticated and encrypted" : "gradient ring authenticated");
        return credentials;
    }

    /// <summary>Akka.Remote on Node:Host/Port, over TLS with the cluster's pinned certificate on both ends when there are credentials.</summary>
    public static AkkaConfigurationBuilder WithClusterRemoting(this AkkaConfigurationBuilder akka, NodeOptions options, ClusterCredentials? credentials)
    {
        var remote = new RemoteOptions { HostName = options.Host, Port = options.Port, PublicHostName = options.EffectivePublicHost };
        if (credentials is not null)
        {
            remote.EnableSsl = true;
            remote.Ssl = new SslOptions
            {
                X509Certificate = credentials.Certificate,
                SuppressValidation = false,
                RequireMutualAuthentication = true,
                CustomValidator = credentials.Validator(),
            };
        }
        return akka.WithRemoting(remote);
    }
}
