using Akka.Actor;
using Akka.Hosting;
using GanCluster.Actors.Coordinator;
using GanCluster.Actors.Security;
using GanCluster.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace GanCluster.Node.Hosting;

/// <summary>The HTTP API and dashboard on a seed with Node:HttpPort (docs/http-api.md); nothing elsewhere.</summary>
public static class HttpApiHosting
{
    /// <summary>Registered after AddAkka: started once the actor system runs, stopped before it.</summary>
    public static IServiceCollection AddHttpApi(this IServiceCollection services, NodeOptions options, ClusterCredentials? credentials)
    {
        if (!options.IsSeed || options.HttpPort == 0) return services;
        var settings = new HttpApiSettings(options.EffectiveHttpHost, options.HttpPort, credentials, options.RunsRoot);
        return services.AddHostedService(sp => new HttpApiServer(settings, sp.GetRequiredService<ActorSystem>(),
            ct => sp.GetRequiredService<IRequiredActor<CoordinatorActor>>().GetAsync(ct), sp.GetRequiredService<ILoggerFactory>()));
    }
}
