using GanCluster.Engine.Coordinator;
using Akka.Event;
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

    /// <summary>
    /// What a client may ask through the receptionist: submit, status, watch, cancel, list runs. Worker, formation and artifact
    /// messages (failing a step, registering, uploading or reading checkpoint files) come only from cluster members,
    /// never through here.
    /// </summary>
    public static bool FromClients(IGanClusterMessage m) =>
        m is RunProtocol.SubmitRun or RunProtocol.GetStatus or RunProtocol.WatchRun or RunProtocol.CancelRun or RunProtocol.ListRuns;

    public ClientGateway(IActorRef coordinator)
    {
        var log = Context.GetLogger();
        Receive<IGanClusterMessage>(FromClients, m => coordinator.Forward(m));
        Receive<IGanClusterMessage>(m =>
        {
            log.Warning("refused {0} from client {1}: clients may submit, watch, cancel, list runs and ask for status only", m.GetType().Name, Sender.Path.Address);
            Sender.Tell(new RunProtocol.Refused(m.GetType().Name, "clients may submit, watch, cancel, list runs and ask for status only"));
        });
    }
}
