using Akka.Cluster;
using Akka.Hosting;
using GanCluster.Actors.Coordinator;
using GanCluster.Actors.Security;
using GanCluster.Actors.Worker;
using GanCluster.DataPlane;
using TorchSharp;

namespace GanCluster.Node.Hosting;

/// <summary>One worker actor per device of Node:Devices, each with its ring listener and the cluster's ring key.</summary>
public static class WorkerHosting
{
    public static AkkaConfigurationBuilder WithWorkers(this AkkaConfigurationBuilder akka, NodeOptions options, IReadOnlyList<torch.Device> devices,
        ClusterCredentials? credentials, TimeSpan leaveTimeout)
    {
        if (!options.IsWorker) return akka;
        return akka.WithActors((system, registry) =>
        {
            var self = Cluster.Get(system).SelfAddress;
            var dataBind = options.DataBind ?? options.Host;
            foreach (var device in devices)
            {
                var id = $"{self.Host}:{self.Port}/{device}";
                var ws = new WorkerSettings(id, device.ToString(), dataBind, options.EffectivePublicHost,
                    RingTimeout: TimeSpan.FromSeconds(options.RingTimeoutSeconds), UploadTimeout: TimeSpan.FromSeconds(options.ChunkTimeoutSeconds),
                    Ring: credentials?.Ring(options.RingEncryption) ?? RingSecurity.Insecure, LeaveTimeout: leaveTimeout);
                system.ActorOf(WorkerActor.Props(ws, registry.Get<CoordinatorActor>(), device), "worker-" + device.ToString().Replace(':', '-'));
            }
        });
    }
}
