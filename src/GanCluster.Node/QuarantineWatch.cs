using Akka.Actor;
using Akka.Event;
using Akka.Remote;

namespace GanCluster.Node;

/// <summary>
/// A node that the cluster removed while it could not answer (paused, partitioned) learns it only as a quarantine:
/// the others refuse its old identity for good, and Akka.NET's cluster leaves it running alone. This actor turns that
/// into what a downed node does: coordinated shutdown with the downing reason, so the process exits with code 3 and
/// its supervisor starts it again as a new member.
/// </summary>
public sealed class QuarantineWatch : ReceiveActor
{
    public QuarantineWatch()
    {
        var log = Context.GetLogger();
        Context.System.EventStream.Subscribe(Self, typeof(ThisActorSystemQuarantinedEvent));
        Receive<ThisActorSystemQuarantinedEvent>(q =>
        {
            log.Warning("{0} quarantined this node (the cluster removed it); shutting down as downed", q.RemoteAddress);
            CoordinatedShutdown.Get(Context.System).Run(CoordinatedShutdown.ClusterDowningReason.Instance);
        });
    }
}
