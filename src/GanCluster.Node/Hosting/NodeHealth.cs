using System.Text.Json;
using Akka.Actor;
using Akka.DependencyInjection;
using Akka.Event;
using Akka.Hosting;
using Akka.Http.Dsl;
using Akka.Management.Dsl;
using GanCluster.Actors.Coordinator;
using GanCluster.Actors.Worker;
using GanCluster.Protocol;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Route = System.ValueTuple<string, Akka.Http.Dsl.HttpModuleBase>;

namespace GanCluster.Node.Hosting;

/// <summary>The health checks' tags: /alive runs the liveness checks, /ready the readiness checks.</summary>
public static class HealthTags
{
    public const string Liveness = "liveness";
    public const string Readiness = "readiness";
}

/// <summary>Alive while the ActorSystem runs: unhealthy from the moment coordinated shutdown starts (a leave, a downing).</summary>
public sealed class ActorSystemAliveCheck : IAkkaHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(AkkaHealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var system = context.ActorSystem;
        if (system.WhenTerminated.IsCompleted) return Task.FromResult(HealthCheckResult.Unhealthy("the actor system has terminated"));
        var reason = CoordinatedShutdown.Get(system).ShutdownReason;
        return Task.FromResult(reason is null
            ? HealthCheckResult.Healthy("the actor system runs")
            : HealthCheckResult.Unhealthy($"the actor system is shutting down ({reason.GetType().Name})"));
    }
}

/// <summary>A seed is ready when the coordinator singleton (here or on another seed) answers a status request in time.</summary>
public sealed class CoordinatorReadyCheck(TimeSpan timeout) : IAkkaHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(AkkaHealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!context.ActorRegistry.TryGet<CoordinatorActor>(out var coordinator))
            return HealthCheckResult.Unhealthy("the coordinator proxy has not started");
        try
        {
            var status = await coordinator.Ask<RunProtocol.StatusReported>(new RunProtocol.GetStatus(), timeout, cancellationToken);
            return HealthCheckResult.Healthy($"the coordinator answers: {status.State}, {status.Workers} worker(s)");
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException or OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy($"the coordinator did not answer within {timeout.TotalSeconds:F0} s");
        }
    }
}

/// <summary>A worker node is ready once the coordinator has registered every worker actor it runs (one per device).</summary>
public sealed class WorkersRegisteredCheck : IAkkaHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(AkkaHealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var readiness = WorkerReadiness.Get(context.ActorSystem);
        var missing = readiness.Unregistered;
        return Task.FromResult(readiness.Count == 0 ? HealthCheckResult.Unhealthy("no worker has started yet")
            : missing.Count == 0 ? HealthCheckResult.Healthy($"{readiness.Count} worker(s) registered with the coordinator")
            : HealthCheckResult.Unhealthy($"not registered with the coordinator yet: {string.Join(", ", missing)}"));
    }
}

/// <summary>
/// Akka.Management route provider (akka.management.http.routes) serving GET /alive and GET /ready: 200 when every check
/// with that tag is healthy, 503 otherwise, with each check's result as JSON. Read-only: it changes nothing.
/// </summary>
public sealed class HealthRoutes(ExtendedActorSystem system) : IManagementRouteProvider
{
    public Route[] Routes(ManagementRouteProviderSettings settings) =>
        [("/alive", new HealthModule(system, HealthTags.Liveness)), ("/ready", new HealthModule(system, HealthTags.Readiness))];

    sealed class HealthModule(ActorSystem system, string tag) : HttpModuleBase
    {
        static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

        public override async Task<bool> HandleAsync(IAkkaHttpContext context)
        {
            var http = context.HttpContext;
            if (http.Request.Method is not ("GET" or "HEAD")) return false;
            HealthReport report;
            try
            {
                // Microsoft's health check service runs the checks Akka.Hosting registered (WithHealthCheck), by tag.
                var service = DependencyResolver.For(system).Resolver.GetService<HealthCheckService>();
                report = await service.CheckHealthAsync(r => r.Tags.Contains(tag), http.Request.TimeoutCancellationToken);
            }
            catch (Exception e)
            {
                system.Log.Error(e, "health check {0} failed", tag);
                throw;
            }
            http.Response.StatusCode = report.Status == HealthStatus.Healthy ? Ceen.HttpStatusCode.OK : Ceen.HttpStatusCode.ServiceUnavailable;
            http.Response.SetNonCacheable();
            await http.Response.WriteAllJsonAsync(JsonSerializer.Serialize(new
            {
                status = report.Status.ToString(),
                checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
            }, Json));
            return true;
        }
    }
}
