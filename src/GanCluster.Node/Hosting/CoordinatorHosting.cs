using GanCluster.Engine.Coordinator;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Tools.Client;
using Akka.Hosting;
using GanCluster.Actors.Coordinator;

namespace GanCluster.Node.Hosting;

/// <summary>The coordinator singleton on the seeds (with the client gateway and the member book), a proxy to it elsewhere.</summary>
public static class CoordinatorHosting
{
    public static AkkaConfigurationBuilder WithCoordinator(this AkkaConfigurationBuilder akka, NodeOptions options)
    {
        var singleton = new ClusterSingletonOptions { Role = "seed" };
        if (!options.IsSeed) return akka.WithSingletonProxy<CoordinatorActor>("coordinator", singleton);

        var settings = new CoordinatorSettings(TimeSpan.FromSeconds(options.PrepareTimeoutSeconds), TimeSpan.FromSeconds(options.StepTimeoutSeconds), options.ChecksumEvery)
        {
            ResumeGrace = TimeSpan.FromSeconds(options.ResumeGraceSeconds),
            OutputRoot = Path.GetFullPath(options.RunsRoot),
            MemoryLimitBytes = options.MaxRunMemoryGB * 1e9,
        };
        return akka.WithSingleton<CoordinatorActor>("coordinator", CoordinatorActor.Props(settings, options.StateDir), singleton, createProxyToo: true)
            .WithClusterClientReceptionist("receptionist", "seed")
            .WithActors((system, registry) =>
            {
                system.ActorOf(Props.Create(() => new MemberBook(options.StateDir)), "member-book");
                // Clients reach the cluster only through the gateway: submit, status, watch and cancel.
                var gateway = system.ActorOf(Props.Create(() => new ClientGateway(registry.Get<CoordinatorActor>())), ClientGateway.Name);
                ClusterClientReceptionist.Get(system).RegisterService(gateway);
            });
    }
}
