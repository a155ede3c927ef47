using Akka.Actor;
using GanCluster.Protocol;

namespace GanCluster.Actors.Coordinator;

/// <summary>
/// The entry point clients reach through ClusterClient (registered with the receptionist on every seed):
/// forwards to the coordinator singleton, keeping the client as the sender so replies go straight back.
/// </summary>
public sealed class ClientGateway : ReceiveActor
{
    public const string Name = "gateway";
    public const string Path = "/user/" + Name;

    public ClientGateway(IActorRef coordinator) => Receive<IGanClusterMessage>(m => coordinator.Forward(m));
}
