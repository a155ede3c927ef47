using System.Net;
using Akka.Actor;
using GanCluster.Actors.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace GanCluster.Http;

/// <summary>Where and how the API listens: with credentials HTTPS with the cluster's certificate, without plain HTTP (loopback only).</summary>
public sealed record HttpApiSettings(string Host, int Port, ClusterCredentials? Credentials, string RunsRoot);

/// <summary>
/// The seed's HTTP API and dashboard: a Kestrel server of its own in the node's process, started after the actor
/// system (it is given the coordinator's proxy) and stopped before it.
/// </summary>
public sealed class HttpApiServer(HttpApiSettings settings, ActorSystem system, Func<CancellationToken, Task<IActorRef>> coordinator, ILoggerFactory logs)
    : IHostedService, IAsyncDisposable
{
    readonly ILogger _log = logs.CreateLogger("GanCluster.Http");
    readonly CancellationTokenSource _stopping = new();
    WebApplication? _app;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var proxy = await coordinator(cancellationToken);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        // The node's logging, and its lifetime: this server must not take SIGTERM or Ctrl+C for itself.
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(logs);
        builder.Services.AddSingleton<IHostLifetime, NoLifetime>();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(IPAddress.Parse(settings.Host), settings.Port, listen =>
            {
                if (settings.Credentials is not { } credentials) return;
                listen.UseHttps(https =>
                {
                    https.ServerCertificate = credentials.Certificate;
                    // Asked for, not required: a browser or curl with the token has none. Whether it is the cluster's
                    // is checked per request (ApiAuthentication), so that a stranger gets 401, not a broken handshake.
                    https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
                    https.ClientCertificateValidation = (_, _, _) => true;
                    https.CheckCertificateRevocation = false;
                });
            });
        });
        var app = builder.Build();
        var auth = new ApiAuthentication(settings.Credentials, _log);
        app.Use(auth.Middleware);
        new ApiRoutes(system, proxy, Path.GetFullPath(settings.RunsRoot), settings.Credentials, auth).Map(app, _stopping.Token);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException e)
        {
            await app.DisposeAsync();
            throw new IOException($"Node:HttpPort {settings.Port} on {settings.Host}: cannot listen ({e.Message}); choose another port", e);
        }
        _app = app;
        _log.LogInformation("http api and dashboard: {Scheme}://{Host}:{Port}/{Auth}", settings.Credentials is null ? "http" : "https", settings.Host, settings.Port,
            settings.Credentials is null ? " (Node:Insecure: no authentication, loopback only)" : " (the cluster's certificate, or its token: gancluster certs token)");
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // Event streams end now; other requests get a few seconds.
        await _stopping.CancelAsync();
        if (_app is null) return;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        await _app.StopAsync(timeout.Token);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
        _stopping.Dispose();
    }

    sealed class NoLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
