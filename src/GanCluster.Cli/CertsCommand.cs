using System.CommandLine;
using GanCluster.Actors.Security;

namespace GanCluster.Cli;

/// <summary>
/// <c>gancluster certs create</c>: the cluster's credentials (certificate with its key, and the ring's secret) in one
/// folder that every node and client is given; <c>gancluster certs show</c> checks a folder and prints its pin.
/// </summary>
static class CertsCommand
{
    /// <summary>The folder a command uses: --credentials, else $GANCLUSTER_CREDENTIALS.</summary>
    public static string DefaultFolder => Environment.GetEnvironmentVariable(ClusterCredentials.EnvironmentVariable) is { Length: > 0 } env ? env : "credentials";

    public static Command Build()
    {
        var output = new Option<string>("--out") { Description = $"Folder to write {ClusterCredentials.CertificateFile} and {ClusterCredentials.SecretFile} to (default: ${ClusterCredentials.EnvironmentVariable}, else ./credentials)" };
        var name = new Option<string>("--name") { Description = "A name for the cluster, in the certificate's subject", DefaultValueFactory = _ => Environment.MachineName };
        var days = new Option<int>("--days") { Description = "Days the certificate is valid", DefaultValueFactory = _ => 825 };
        var force = new Option<bool>("--force") { Description = "Replace existing credentials (every node and client must then be given the new folder)" };
        var create = new Command("create", "Create the cluster's certificate and secret: give the folder to every node (Node:Credentials) and client (--credentials)")
            { output, name, days, force };
        create.SetAction(r => Common.Guard(() =>
        {
            var folder = r.GetValue(output) ?? DefaultFolder;
            var c = ClusterCredentials.Create(folder, r.GetValue(name)!, r.GetValue(days), r.GetValue(force));
            Console.WriteLine($"cluster credentials in {c.Folder} (owner-only files):");
            Console.WriteLine($"  {ClusterCredentials.CertificateFile}: {c.Certificate.Subject}, valid until {c.Certificate.NotAfter:yyyy-MM-dd}, SHA-256 {c.Thumbprint}");
            Console.WriteLine($"  {ClusterCredentials.SecretFile}: 32 random bytes (the gradient ring's handshake key is derived from it)");
            Console.WriteLine("Every node and client needs this folder: scripts/start-*.sh --credentials DIR (default: the repository's credentials/),");
            Console.WriteLine($"gancluster submit/status/cancel --credentials DIR (or ${ClusterCredentials.EnvironmentVariable}), a Kubernetes secret: see cluster-config/kubernetes/README.md");
            return 0;
        }));

        var folderOption = CredentialsOption();
        var show = new Command("show", "Check a credentials folder and print its certificate's pin") { folderOption };
        show.SetAction(r => Common.Guard(() =>
        {
            var c = ClusterCredentials.Load(r.GetValue(folderOption) ?? DefaultFolder);
            Console.WriteLine($"{c.Folder}: {c.Certificate.Subject}, valid {c.Certificate.NotBefore:yyyy-MM-dd} to {c.Certificate.NotAfter:yyyy-MM-dd}, SHA-256 {c.Thumbprint}");
            foreach (var w in c.Warnings()) Console.Error.WriteLine($"warning: {w}");
            return 0;
        }));
        var tokenFolder = CredentialsOption();
        var token = new Command("token", "Print the bearer token of the seeds' HTTP API, derived from the cluster's secret " +
                                         "(curl -H \"Authorization: Bearer $(gancluster certs token)\", or the dashboard's login)") { tokenFolder };
        token.SetAction(r => Common.Guard(() =>
        {
            Console.WriteLine(ClusterCredentials.Load(r.GetValue(tokenFolder) ?? DefaultFolder).HttpToken());
            return 0;
        }));
        return new Command("certs", "The cluster's credentials: mutual TLS between nodes and clients, the gradient ring's key, the HTTP API's token") { create, show, token };
    }

    public static Option<string?> CredentialsOption() => new("--credentials")
    {
        Description = $"The cluster's credentials folder (gancluster certs create); default ${ClusterCredentials.EnvironmentVariable}, else ./credentials",
    };

    public static Option<bool> InsecureOption() => new("--insecure")
    {
        Description = "Connect with no TLS and no client certificate (only to a cluster started with Node:Insecure=true)",
    };

    /// <summary>The credentials a client command connects with, or null (a loud warning) with --insecure.</summary>
    public static ClusterCredentials? ForClient(string? folder, bool insecure)
    {
        if (insecure)
        {
            if (folder is not null) throw new UsageException("--credentials and --insecure exclude each other: choose one");
            Console.Error.WriteLine("gancluster: warning: --insecure: connecting without TLS or a certificate; only a cluster started with Node:Insecure=true answers");
            return null;
        }
        var chosen = folder ?? DefaultFolder;
        if (folder is null && !Directory.Exists(chosen))
            throw new UsageException($"no cluster credentials: give --credentials DIR (or set ${ClusterCredentials.EnvironmentVariable}) to the folder made by " +
                                     "gancluster certs create, or --insecure for a cluster started with Node:Insecure=true");
        return ClusterCredentials.Load(chosen);
    }
}
