using System.Reflection;
using Akka.Actor;
using GanCluster.Actors.Security;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace GanCluster.Http;

/// <summary>
/// The routes of docs/http-api.md. Each one asks the coordinator singleton (through its proxy) with the messages a CLI
/// sends over ClusterClient; run folders are read from disk here, files sent by Kestrel, never through an actor.
/// </summary>
public sealed class ApiRoutes(ActorSystem system, IActorRef coordinator, string runsRoot, ClusterCredentials? credentials, ApiAuthentication auth)
{
    static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    public void Map(IEndpointRouteBuilder app, CancellationToken stopping)
    {
        app.MapGet("/", () => Dashboard("index.html"));
        app.MapGet("/dashboard/{file}", (string file) => Dashboard(file));

        app.MapPost("/api/login", (Func<HttpContext, Task<IResult>>)Login);
        app.MapPost("/api/logout", (HttpContext context) =>
        {
            context.Response.Cookies.Delete(HttpApi.TokenCookie, Cookie(context));
            return Results.NoContent();
        });

        app.MapGet("/api/status", async () => await Ask<RunProtocol.StatusReported>(new RunProtocol.GetStatus()) is { } s
            ? Results.Json(HttpApi.Status.Of(s), HttpApi.Json)
            : CoordinatorSilent());

        app.MapGet("/api/runs", async () =>
        {
            if (await Ask<RunProtocol.RunsListed>(new RunProtocol.ListRuns()) is not { } listed) return CoordinatorSilent();
            var runs = listed.Runs.Select(r => new HttpApi.Run(r.Name, r.Output, RunFiles.Relative(runsRoot, r.Output), r.State, r.Iteration, r.Total, r.Best,
                DateTime.SpecifyKind(r.UpdatedUtc, DateTimeKind.Utc))).ToArray();
            return Results.Json(new HttpApi.RunsListed(runs, listed.Omitted), HttpApi.Json);
        });

        app.MapPost("/api/runs", (Func<HttpContext, Task<IResult>>)Submit);

        app.MapGet("/api/runs/{runId}/events", (HttpContext context, string runId) => RunEvents.Stream(context, runId, system, coordinator, stopping));

        app.MapPost("/api/runs/{runId}/cancel", async (HttpContext context, string runId) =>
        {
            var by = $"http ({context.Items[ApiAuthentication.ItemKey]}) from {context.Connection.RemoteIpAddress}";
            return await Ask<object>(new RunProtocol.CancelRun(runId, by)) switch
            {
                RunProtocol.CancelAck a => Results.Json(new HttpApi.Cancelled(a.Message), HttpApi.Json),
                RunProtocol.CancelNack n => Results.Json(new HttpApi.ApiError(n.Reason), HttpApi.Json, statusCode: StatusCodes.Status409Conflict),
                _ => CoordinatorSilent(),
            };
        });

        app.MapGet("/api/runs/{name}/metrics", (string name) =>
        {
            if (RunFiles.Find(runsRoot, Uri.UnescapeDataString(name)) is not { } folder) return NoRun(name);
            var rows = MetricsCsv.Read(Path.Combine(folder, "metrics.csv")).Select(r => new HttpApi.MetricsRow(r.Iteration, Finite(r.LossD), Finite(r.LossG),
                Finite(r.DReal), Finite(r.DFake), Finite(r.ImagesPerSecond), Finite(r.ElapsedSeconds), r.Skipped, Finite(r.Fid), Finite(r.ClassKl),
                Finite(r.Confident), r.Modes, Finite(r.HighQuality))).ToArray();
            return Results.Json(new HttpApi.Metrics(rows), HttpApi.Json);
        });

        app.MapGet("/api/runs/{name}/files", (string name) =>
            RunFiles.Find(runsRoot, Uri.UnescapeDataString(name)) is { } folder
                ? Results.Json(new HttpApi.FilesListed(RunFiles.List(folder)), HttpApi.Json)
                : NoRun(name));

        app.MapGet("/api/runs/{name}/files/{**path}", (HttpContext context, string name, string? path) =>
        {
            if (RunFiles.Find(runsRoot, Uri.UnescapeDataString(name)) is not { } folder) return NoRun(name);
            // %2F arrives undecoded: decode it, so that an encoded ".." is checked like a plain one.
            var relative = path is null ? null : Uri.UnescapeDataString(path);
            if (RunFiles.Resolve(folder, relative) is not { } file)
            {
                auth.Refused(context, $"file \"{relative}\" of run {name}: not a plain file inside the run folder");
                return Results.Json(new HttpApi.ApiError($"run {name} has no file {relative}"), HttpApi.Json, statusCode: StatusCodes.Status404NotFound);
            }
            // Kestrel sends the file from disk (ranges too: an interrupted download can go on).
            return Results.File(file, RunFiles.ContentType(file), Path.GetFileName(file), enableRangeProcessing: true);
        });
    }

    async Task<IResult> Login(HttpContext context)
    {
        HttpApi.Login? body;
        try
        {
            body = await context.Request.ReadFromJsonAsync<HttpApi.Login>(HttpApi.Json, context.RequestAborted);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or BadHttpRequestException)
        {
            return Results.Json(new HttpApi.ApiError("expected JSON {\"token\": \"...\"} (the token of gancluster certs token)"), HttpApi.Json,
                statusCode: StatusCodes.Status400BadRequest);
        }
        if (credentials is null) return Results.NoContent();   // insecure: nothing to log in to
        if (!credentials.IsHttpToken(body?.Token))
        {
            auth.Refused(context, "a wrong token at login");
            return Results.Json(new HttpApi.ApiError("wrong token (gancluster certs token prints the cluster's)"), HttpApi.Json,
                statusCode: StatusCodes.Status401Unauthorized);
        }
        context.Response.Cookies.Append(HttpApi.TokenCookie, body!.Token!, Cookie(context));
        return Results.NoContent();
    }

    static CookieOptions Cookie(HttpContext context) => new()
    {
        HttpOnly = true,
        Secure = context.Request.IsHttps,
        SameSite = SameSiteMode.Strict,
        Path = "/",
    };

    async Task<IResult> Submit(HttpContext context)
    {
        // A spec must fit one Akka frame with room to spare, as over ClusterClient: refused unread when larger.
        if (context.Request.ContentLength > RunSpecValidator.MaxSpecBytes) return TooLarge();
        using var buffer = new MemoryStream();
        var body = context.Request.Body;
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > RunSpecValidator.MaxSpecBytes) return TooLarge();
        }
        string json;
        try
        {
            json = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(buffer.ToArray());
        }
        catch (System.Text.DecoderFallbackException)
        {
            return Results.Json(new HttpApi.ApiError("the run spec is not UTF-8 text"), HttpApi.Json, statusCode: StatusCodes.Status400BadRequest);
        }
        return await Ask<object>(new RunProtocol.SubmitRun(json, Watch: false)) switch
        {
            RunProtocol.SubmitAck a => Results.Json(new HttpApi.Submitted(a.RunId, a.Workers, a.Output), HttpApi.Json, statusCode: StatusCodes.Status202Accepted),
            // With errors the spec is at fault (400); without, the cluster's state (busy, no workers): 409.
            RunProtocol.SubmitNack n => Results.Json(new HttpApi.ApiError(n.Reason, n.Errors), HttpApi.Json,
                statusCode: n.Errors.Length > 0 ? StatusCodes.Status400BadRequest : StatusCodes.Status409Conflict),
            _ => CoordinatorSilent(),
        };

        static IResult TooLarge() => Results.Json(new HttpApi.ApiError($"a run spec may be at most {RunSpecValidator.MaxSpecBytes:N0} bytes"), HttpApi.Json,
            statusCode: StatusCodes.Status413PayloadTooLarge);
    }

    /// <summary>The coordinator's answer, or null when it did not answer in time (the cluster forming, the singleton moving).</summary>
    async Task<T?> Ask<T>(object message) where T : class
    {
        try
        {
            return await coordinator.Ask<T>(message, AskTimeout);
        }
        catch (AskTimeoutException)
        {
            return null;
        }
    }

    static IResult CoordinatorSilent() => Results.Json(
        new HttpApi.ApiError($"the coordinator did not answer within {AskTimeout.TotalSeconds:F0} s (is the cluster forming, or a seed taking it over?)"),
        HttpApi.Json, statusCode: StatusCodes.Status503ServiceUnavailable);

    static IResult NoRun(string name) =>
        Results.Json(new HttpApi.ApiError($"no run folder {name} under the seed's runs root (GET /api/runs lists them)"), HttpApi.Json,
            statusCode: StatusCodes.Status404NotFound);

    static double? Finite(double? v) => v is { } x && double.IsFinite(x) ? x : null;

    public static Task Error(HttpContext context, int status, string error)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new HttpApi.ApiError(error), HttpApi.Json);
    }

    static readonly Assembly Self = typeof(ApiRoutes).Assembly;

    /// <summary>A file of the dashboard, from the assembly (the name is looked up, never used as a path).</summary>
    static IResult Dashboard(string file)
    {
        var stream = Self.GetManifestResourceStream("Dashboard/" + file);
        if (stream is null) return Results.NotFound();
        var type = Path.GetExtension(file) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            ".svg" => "image/svg+xml",
            ".png" => "image/png",
            _ => "application/octet-stream",
        };
        return Results.Stream(stream, type);
    }
}
