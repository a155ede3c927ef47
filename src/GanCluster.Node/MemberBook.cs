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
        var cluster = Cluster.Get(Context.System);
        var path = Path.Combine(stateDir, FileName);
        Receive<ClusterEvent.IMemberEvent>(_ =>
        {
            var members = cluster.State.Members.Where(m => m.Status == MemberStatus.Up && !m.Address.Equals(cluster.SelfAddress))
                .Select(m => $"{m.Address.Host}:{m.Address.Port}").OrderBy(a => a, StringComparer.Ordinal).ToArray();
            Directory.CreateDirectory(stateDir);
            File.WriteAllText(path + ".tmp", JsonSerializer.Serialize(members));
            File.Move(path + ".tmp", path, overwrite: true);
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
