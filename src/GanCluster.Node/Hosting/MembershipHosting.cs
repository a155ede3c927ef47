using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Hosting;
using GanCluster.Actors;
using GanCluster.Actors.Security;
using GanCluster.Actors.Worker;
using Microsoft.Extensions.Logging;

namespace GanCluster.Node.Hosting;

/// <summary>The protocol's serialization, remoting (mutual TLS with credentials) and cluster membership with its downing.</summary>
public static class MembershipHosting
{
    /// <summary>Hyperion for the protocol only, no write batching, the workers' pinned dispatcher.</summary>
    public static AkkaConfigurationBuilder WithGanClusterProtocol(this AkkaConfigurationBuilder akka) =>
        akka.AddHocon(ClusterHocon.Serialization, HoconAddMode.Prepend)
            .AddHocon(WorkerActor.DispatcherHocon, HoconAddMode.Prepend);

    /// <summary>
    /// Joins through Node:Seeds (and, on a seed, the members it remembers), downs by keep-majority after
    /// Node:DowningStableAfterSeconds, and gives a leaving worker <paramref name="leaveTimeout"/> before cluster shutdown.
    /// </summary>
    public static AkkaConfigurationBuilder WithClusterMembership(this AkkaConfigurationBuilder akka, NodeOptions options,
        ClusterCredentials? credentials, TimeSpan leaveTimeout, ILogger log)
    {
        // A restarted seed also tries the members it remembers (after the configured seeds): it rejoins its workers' cluster.
        // With bootstrap (Node:Discovery config or kubernetes) there are no seed nodes: ManagementHosting joins, and tries
        // the remembered members first.
        var remembered = options.IsSeed && !options.UsesBootstrap ? MemberBook.Read(options.StateDir) : [];
        var seedNodes = (options.UsesBootstrap ? [] : options.SeedList).Select(s => s.ToString()).Concat(remembered).Distinct()
            .Select(a => ClusterHocon.NodeAddress(credentials is not null, a)).ToArray();
        if (remembered.Count > 0) log.LogInformation("also trying remembered members {Members} as seeds", string.Join(", ", remembered));

        akka.AddHocon($"akka.coordinated-shutdown.phases.before-cluster-shutdown.timeout = {(int)leaveTimeout.TotalSeconds}s", HoconAddMode.Prepend)
            // No typed options for these in Akka.Hosting. The resolver's stable-after (Akka's default 20 s), and as many 1 s
            // singleton hand-over retries as its seconds: Akka's removal margin is stable-after, but retries never go below 15.
            .AddHocon($"akka.cluster.split-brain-resolver.stable-after = {options.DowningStableAfterSeconds}s", HoconAddMode.Prepend)
            .AddHocon($"akka.cluster.singleton.min-number-of-hand-over-retries = {options.DowningStableAfterSeconds}", HoconAddMode.Prepend)
            // Akka 1.5.73's singleton proxy starts its "failed to find singleton after 30 seconds" timer with no initial
            // delay, so the warning fires at once, whenever a proxy starts looking (every start, every hand-over), not
            // after 30 s. Off; a worker that no coordinator answers for 30 s says so itself (WorkerActor).
            .AddHocon("akka.cluster.singleton-proxy.log-singleton-identification-failure = off", HoconAddMode.Prepend)
            .WithClusterRemoting(options, credentials)
            .WithClustering(new ClusterOptions
            {
                Roles = options.RoleList.ToArray(),
                SeedNodes = seedNodes,
                // Downing by Akka's split-brain resolver, never auto-down: the side with the majority survives.
                SplitBrainResolver = new KeepMajorityOption(),
            });

        // What Akka actually uses once every HOCON layer is merged: the place to check Node:DowningStableAfterSeconds took.
        return akka.WithActors((system, _) =>
        {
            system.ActorOf(Props.Create<QuarantineWatch>(), "quarantine-watch");
            // Node:ReadyFile says how far the node got, whatever the log's levels and format: scripts/start-node.sh
            // waits on it, "started" meaning joined, not merely listening.
            var cluster = Akka.Cluster.Cluster.Get(system);
            NodeReadyFile.Write(options.ReadyFile, $"listening {cluster.SelfAddress}");
            cluster.RegisterOnMemberUp(() =>
            {
                NodeReadyFile.Write(options.ReadyFile, $"joined {cluster.SelfAddress}");
                log.LogInformation("joined the cluster as {Address} ({Roles}); {Up} member(s) up", cluster.SelfAddress, string.Join(",", options.RoleList),
                    cluster.State.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up));
            });
            var sbr = system.Settings.Config.GetConfig("akka.cluster.split-brain-resolver");
            log.LogInformation("downing by {Strategy} after {StableAfter:F0} s stable-after, {Retries} singleton hand-over retries",
                sbr.GetString("active-strategy"), sbr.GetTimeSpan("stable-after").TotalSeconds, system.Settings.Config.GetInt("akka.cluster.singleton.min-number-of-hand-over-retries"));
        });
    }
}
