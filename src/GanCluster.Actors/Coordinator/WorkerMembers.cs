using Akka.Actor;

namespace GanCluster.Actors.Coordinator;

/// <summary>Who may speak as a worker: this node with the worker role, or a cluster member with it.</summary>
public static class WorkerMembers
{
    /// <summary>Whether <paramref name="address"/> (a sender's node) is a member of <paramref name="system"/>'s cluster with the worker role.</summary>
    public static bool Contains(ActorSystem system, Address address)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        return address.HasLocalScope
            ? cluster.SelfRoles.Contains("worker")
            : cluster.State.Members.Any(x => x.Address.Equals(address) && x.HasRole("worker"));
    }
}
