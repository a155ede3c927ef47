using GanCluster.Actors.Security;
using GanCluster.Protocol;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace GanCluster.Http;

/// <summary>
/// Who may use the API: a TLS client certificate that is the cluster's (pinned by SHA-256, as Akka.Remote pins it), the
/// bearer token derived from the cluster's secret, or the cookie <c>POST /api/login</c> sets to that token. Everything
/// else gets 401, logged without what was presented. The dashboard's page and files and the login itself are open:
/// they hold no data. Without credentials (Node:Insecure=true, loopback only) nothing is asked.
/// </summary>
public sealed class ApiAuthentication(ClusterCredentials? credentials, ILogger log)
{
    /// <summary>How a request was let in (for the logs and the "by" of a cancel).</summary>
    public const string ItemKey = "gancluster.auth";

    public static bool IsOpen(HttpRequest request)
    {
        var path = request.Path.Value ?? "";
        if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
            return path == "/" || path.StartsWith("/dashboard/", StringComparison.Ordinal);
        return HttpMethods.IsPost(request.Method) && path is "/api/login" or "/api/logout";
    }

    /// <summary>"certificate", "token", "cookie" or "insecure" when the request may go on; null (and why) when not.</summary>
    public string? Authenticate(HttpContext context, out string? refusal)
    {
        refusal = null;
        if (credentials is null) return "insecure";
        var certificate = context.Connection.ClientCertificate;
        if (credentials.IsClusterCertificate(certificate)) return "certificate";
        var header = context.Request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            if (credentials.IsHttpToken(header["Bearer ".Length..].Trim())) return "token";
            refusal = "a wrong bearer token";
        }
        else if (context.Request.Cookies.TryGetValue(HttpApi.TokenCookie, out var cookie))
        {
            if (credentials.IsHttpToken(cookie)) return "cookie";
            refusal = $"a wrong {HttpApi.TokenCookie} cookie";
        }
        refusal ??= certificate is not null
            ? $"a client certificate that is not the cluster's ({certificate.Subject})"
            : "no client certificate, token or cookie";
        return null;
    }

    public async Task Middleware(HttpContext context, RequestDelegate next)
    {
        context.Response.Headers.XContentTypeOptions = "nosniff";
        if (IsOpen(context.Request))
        {
            await next(context);
            return;
        }
        if (Authenticate(context, out var refusal) is { } how)
        {
            context.Items[ItemKey] = how;
            await next(context);
            return;
        }
        Refused(context, refusal!);
        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        context.Response.Headers.WWWAuthenticate = "Bearer";
        await context.Response.WriteAsJsonAsync(new HttpApi.ApiError(
            "authentication required: the cluster's certificate as TLS client certificate, Authorization: Bearer <gancluster certs token>, " +
            $"or the {HttpApi.TokenCookie} cookie from POST /api/login"), HttpApi.Json);
    }

    /// <summary>Logs a refused request: method, path, peer and why; never the token or cookie presented.</summary>
    public void Refused(HttpContext context, string why) =>
        log.LogWarning("http api: refused {Method} {Path} from {Peer}: {Why}", context.Request.Method, context.Request.Path.Value,
            context.Connection.RemoteIpAddress, why);
}
