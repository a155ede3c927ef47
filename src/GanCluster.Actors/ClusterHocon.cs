using Akka.Configuration;
using Akka.Actor;
using GanCluster.Actors.Security;
using GanCluster.Protocol;
using Hyperion;

namespace GanCluster.Actors;

/// <summary>HOCON for what has no typed Akka.Hosting option: Hyperion for the protocol, ClusterClient tunnels.</summary>
public static class ClusterHocon
{
    public const string SystemName = "gancluster";

    /// <summary>Akka.Remote's scheme: with TLS on, every address is akka.ssl.tcp (and a plain akka.tcp node cannot even address it).</summary>
    public static string Scheme(bool tls) => tls ? "akka.ssl.tcp" : "akka.tcp";

    /// <summary>The address of the cluster's node at <paramref name="hostPort"/> (host:port).</summary>
    public static string NodeAddress(bool tls, string hostPort) => $"{Scheme(tls)}://{SystemName}@{hostPort}";

    /// <summary>
    /// The types Hyperion may create when it reads a message: the protocol's own (messages and the records and enums they
    /// hold), nothing else. A message naming any other type is refused before the type is loaded or constructed.
    /// </summary>
    public static IReadOnlyList<Type> AllowedTypes { get; } = typeof(IGanClusterMessage).Assembly.GetTypes()
        // Static protocol classes (abstract and sealed) only hold the types; they never travel.
        .Where(t => (t.IsPublic || t.IsNestedPublic) && !t.IsInterface && !(t.IsAbstract && t.IsSealed))
        .OrderBy(t => t.FullName, StringComparer.Ordinal).ToList();

    /// <summary>
    /// A plain ActorSystem (the CLI's client, a benchmark, a test's member) with <paramref name="config"/>, the protocol's
    /// serialization and, with <paramref name="credentials"/>, mutual TLS pinned to the cluster's certificate;
    /// <paramref name="refused"/> hears why a peer's certificate was refused.
    /// </summary>
    public static ActorSystem CreateSystem(string name, Config config, ClusterCredentials? credentials, Action<string>? refused = null)
    {
        var full = config.WithFallback(Serialization);
        if (credentials is null) return ActorSystem.Create(name, full);
        var tls = ConfigurationFactory.ParseString("akka.remote.dot-netty.tcp.enable-ssl = true").WithFallback(full);
        return ActorSystem.Create(name, BootstrapSetup.Create().WithConfig(tls).And(credentials.SslSetup(refused)));
    }

    /// <summary>Control messages go through Hyperion, bound to the protocol's marker interface; only the protocol's types are read.</summary>
    public static Config Serialization => ConfigurationFactory.ParseString("""
        akka.actor {
          serializers.gancluster = "GanCluster.Actors.ProtocolSerializer, GanCluster.Actors"
          serialization-bindings {
            "GanCluster.Protocol.IGanClusterMessage, GanCluster.Protocol" = gancluster
          }
        }
        # Linux lets a second socket bind a port in use with SO_REUSEADDR, and Akka sets it there by default: two seeds on
        # one port then both "start". Off: the second one fails to bind and says so.
        akka.remote.dot-netty.tcp.tcp-reuse-addr = off
        # Each step is a request/response round trip; batching writes (flush every 40 ms) would add that to every update.
        akka.remote.dot-netty.tcp.batching.enabled = false
        # A watching client hears from the run at each logging interval; keep its tunnel open between them.
        akka.cluster.client.receptionist.response-tunnel-receive-timeout = 30m
        akka.cluster.client.receptionist.role = seed
        """);
}

/// <summary>
/// Hyperion's type filter for the protocol: a type name read off the wire (or a type about to be written) passes only
/// when it is one of the protocol's types, or an array of one, or a plain value type Hyperion writes by name.
/// </summary>
public sealed class ProtocolTypeFilter(IEnumerable<Type> allowed) : ITypeFilter
{
    // "Namespace.Type+Nested, Assembly": what is left of an assembly-qualified name without version, culture and key.
    readonly HashSet<string> _allowed = allowed.Concat(
        [typeof(string), typeof(int), typeof(long), typeof(double), typeof(bool), typeof(byte), typeof(float), typeof(DateTimeOffset), typeof(DateTime)])
        .Select(t => $"{t.FullName}, {t.Assembly.GetName().Name}").ToHashSet(StringComparer.Ordinal);

    public bool IsAllowed(string typeName)
    {
        var parts = typeName.Split(',', 3, StringSplitOptions.TrimEntries);
        if (parts.Length < 2) return false;
        var type = parts[0];
        while (type.EndsWith("[]", StringComparison.Ordinal)) type = type[..^2];
        return _allowed.Contains($"{type}, {parts[1]}");
    }
}

/// <summary>
/// Hyperion for the protocol's messages, reading and writing only the protocol's types (<see cref="ProtocolTypeFilter"/>)
/// with Hyperion's deny-list of unsafe types on top. Akka's own HyperionSerializer cannot do this in 1.5.73: its
/// HOCON <c>allowed-types</c> makes Hyperion compare short type names with full ones when writing (so it refuses the
/// very types it lists), and a <c>HyperionSerializerSetup</c> type filter never reaches the Hyperion serializer it builds.
/// </summary>
public sealed class ProtocolSerializer : Akka.Serialization.Serializer
{
    readonly Serializer _hyperion = new(new SerializerOptions(
        versionTolerance: true, preserveObjectReferences: true, surrogates: null, serializerFactories: null, knownTypes: null,
        ignoreISerializable: true, packageNameOverrides: null, disallowUnsafeTypes: true,
        typeFilter: new ProtocolTypeFilter(ClusterHocon.AllowedTypes)));

    public ProtocolSerializer(ExtendedActorSystem system) : base(system)
    {
    }

    /// <summary>Unique among the system's serializers (Akka's own use 1-100 and negative ids).</summary>
    public override int Identifier => 4711;
    public override bool IncludeManifest => false;

    public override byte[] ToBinary(object obj)
    {
        using var ms = new MemoryStream();
        _hyperion.Serialize(obj, ms);
        return ms.ToArray();
    }

    public override object FromBinary(byte[] bytes, Type type)
    {
        using var ms = new MemoryStream(bytes);
        return _hyperion.Deserialize<object>(ms);
    }
}
