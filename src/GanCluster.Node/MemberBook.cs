using System.Text.Json;
using Akka.Actor;
using Akka.Cluster;

namespace GanCluster.Node;

/// <summary>
/// On a seed: remembers the addresses of the cluster's members in StateDir/members.json. A seed restarted after a crash
/// tries them as extra seed nodes (after itself), so it joins the cluster its workers still form instead of starting
/// a second, empty one beside it.
/// </summary>
public sealed class MemberBook : ReceiveActor
{
    public const string FileName = "members.json";

    public MemberBook(string stateDir)
    {
        var self = Cluster.Get(Context.System).SelfAddress;
        var path = Path.Combine(stateDir, FileName);
        var up = new SortedSet<string>(StringComparer.Ordinal);
        // Kept from the events themselves: Cluster.State is updated asynchronously and may lag behind them.
        Receive<ClusterEvent.IMemberEvent>(e =>
        {
            var address = $"{e.Member.Address.Host}:{e.Member.Address.Port}";
            if (e.Member.Address.Equals(self)) return;
            var changed = e is ClusterEvent.MemberUp ? up.Add(address) : e is ClusterEvent.MemberRemoved && up.Remove(address);
            if (!changed) return;
            Directory.CreateDirectory(stateDir);
            var tmp = $"{path}.{Environment.ProcessId}.tmp";   // several seeds may share the state folder
            File.WriteAllText(tmp, JsonSerializer.Serialize(up.ToArray()));
            File.Move(tmp, path, overwrite: true);
        });
    }

    protected override void PreStart() =>
        Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent));

    protected override void PostStop() => Cluster.Get(Context.System).Unsubscribe(Self);

    /// <summary>The remembered members (host:port), or none.</summary>
    public static IReadOnlyList<string> Read(string stateDir)
    {
        var path = Path.Combine(stateDir, FileName);
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<string[]>(File.ReadAllText(path)) ?? [] : [];
        }
        catch (JsonException)
        {
            return [];
        }
    }
}
