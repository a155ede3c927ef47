using Akka.Configuration;

namespace GanCluster.Actors;

/// <summary>HOCON for what has no typed Akka.Hosting option: Hyperion for the protocol, ClusterClient tunnels.</summary>
public static class ClusterHocon
{
    public const string SystemName = "gancluster";

    /// <summary>Control messages go through Hyperion, bound to the protocol's marker interface; unsafe types stay off.</summary>
    public static Config Serialization => ConfigurationFactory.ParseString("""
        akka.actor {
          serializers.hyperion = "Akka.Serialization.HyperionSerializer, Akka.Serialization.Hyperion"
          serialization-bindings {
            "GanCluster.Protocol.IGanClusterMessage, GanCluster.Protocol" = hyperion
          }
          serialization-settings.hyperion {
            disallow-unsafe-type = true
          }
        }
        # Each step is a request/response round trip; batching writes (flush every 40 ms) would add that to every update.
        akka.remote.dot-netty.tcp.batching.enabled = false
        # A watching client hears from the run at each logging interval; keep its tunnel open between them.
        akka.cluster.client.receptionist.response-tunnel-receive-timeout = 30m
        akka.cluster.client.receptionist.role = seed
        """);
}
