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
    /// <summary>
    /// Why the workers' ring ports (Node:DataPorts) cannot be used, or null: too few for the devices, or one taken. Checked
    /// before the node starts, so that a taken port stops it with a message instead of a worker that fails later.
    /// </summary>
    public static string? DataPortsProblem(NodeOptions options, int devices)
    {
        if (options.DataPortsProblem(devices) is { } problem) return problem;
        var bind = System.Net.IPAddress.Parse(options.DataBind ?? options.Host);
        for (var i = 0; i < devices; i++)
        {
            if (options.DataPortOf(i) is not (> 0 and var port)) continue;
            try
            {
                RingListener.Start(bind, port).Dispose();
            }
            catch (System.Net.Sockets.SocketException e)
            {
                return $"Node:DataPorts: port {port} on {bind} cannot be listened on ({e.SocketErrorCode}: {e.Message}); another program holds it, or choose other ports";
            }
        }
        return null;
    }

    public static AkkaConfigurationBuilder WithWorkers(this AkkaConfigurationBuilder akka, NodeOptions options, IReadOnlyList<torch.Device> devices,
        ClusterCredentials? credentials, TimeSpan leaveTimeout)
    {
        if (!options.IsWorker) return akka;
        return akka.WithActors((system, registry) =>
        {
            var self = Cluster.Get(system).SelfAddress;
            var dataBind = options.DataBind ?? options.Host;
            foreach (var (device, index) in devices.Select((d, i) => (d, i)))
            {
                var id = $"{self.Host}:{self.Port}/{device}";
                var ws = new WorkerSettings(id, device.ToString(), dataBind, options.EffectivePublicHost,
                    RingTimeout: TimeSpan.FromSeconds(options.RingTimeoutSeconds), UploadTimeout: TimeSpan.FromSeconds(options.ChunkTimeoutSeconds),
                    Ring: credentials?.Ring(options.RingEncryption) ?? RingSecurity.Insecure, LeaveTimeout: leaveTimeout, DataPort: options.DataPortOf(index));
                system.ActorOf(WorkerActor.Props(ws, registry.Get<CoordinatorActor>(), device), "worker-" + device.ToString().Replace(':', '-'));
            }
        });
    }
}
