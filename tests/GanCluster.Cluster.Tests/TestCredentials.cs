using System.Runtime.CompilerServices;
using GanCluster.Actors.Security;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// One set of cluster credentials for this test run, made as a user makes them (the same code as
/// <c>gancluster certs create</c>) and named by GANCLUSTER_CREDENTIALS, which every script, node and CLI process the
/// tests start inherits: the nodes run with mutual TLS, as in production.
/// </summary>
static class TestCredentials
{
    public static string Folder { get; } = Path.Combine(Path.GetTempPath(), "gancluster-test-credentials-" + Environment.ProcessId);

    public static ClusterCredentials Cluster => s_cluster.Value;
    static readonly Lazy<ClusterCredentials> s_cluster = new(() => ClusterCredentials.Load(Folder));

    [ModuleInitializer]
    internal static void Create()
    {
        ClusterCredentials.Create(Folder, "tests", days: 2, force: true);
        Environment.SetEnvironmentVariable(ClusterCredentials.EnvironmentVariable, Folder);
    }

    /// <summary>Another cluster's credentials: valid, but not this cluster's.</summary>
    public static ClusterCredentials Foreign(string folder) => ClusterCredentials.Create(folder, "foreign", days: 2);
}
