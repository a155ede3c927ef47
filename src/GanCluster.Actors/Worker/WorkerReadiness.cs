using System.Collections.Concurrent;
using Akka.Actor;

namespace GanCluster.Actors.Worker;

/// <summary>
/// Which of this node's worker actors the coordinator has acknowledged (WorkerRegistered): the node's readiness probe
/// reads it, the worker actors write it. One per ActorSystem.
/// </summary>
public sealed class WorkerReadiness : IExtension
{
    readonly ConcurrentDictionary<string, bool> _workers = new(StringComparer.Ordinal);

    public static WorkerReadiness Get(ActorSystem system) => system.WithExtension<WorkerReadiness, WorkerReadinessProvider>();

    /// <summary>A worker the node starts: the node is not ready until it has been registered.</summary>
    public void Expect(string workerId) => _workers.TryAdd(workerId, false);

    public void Registered(string workerId) => _workers[workerId] = true;

    /// <summary>The workers not registered yet (every expected one before any registered; none when the node has no workers).</summary>
    public IReadOnlyList<string> Unregistered => _workers.Where(w => !w.Value).Select(w => w.Key).Order(StringComparer.Ordinal).ToList();

    public int Count => _workers.Count;
}

public sealed class WorkerReadinessProvider : ExtensionIdProvider<WorkerReadiness>
{
    public override WorkerReadiness CreateExtension(ExtendedActorSystem system) => new();
}
