using System.Text.Json;
using System.Text.Json.Serialization;

namespace GanCluster.Protocol;

/// <summary>
/// The JSON of the seed's HTTP API (docs/http-api.md): what the server writes and the CLI reads. camelCase, enums as
/// their names, absent values left out; NaN and infinities (a diverged loss) as the strings "NaN", "Infinity".
/// </summary>
public static class HttpApi
{
    /// <summary>The cookie that <c>POST /api/login</c> sets (the dashboard and EventSource authenticate with it).</summary>
    public const string TokenCookie = "gancluster_token";

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowReadingFromString | JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public sealed record ApiError(string Error, string[]? Errors = null);
    public sealed record Login(string? Token);
    /// <summary>The answer to a cancel: what will happen.</summary>
    public sealed record Cancelled(string Message);

    public sealed record Worker(string WorkerId, string Device, int Rank);

    public sealed record Status(RunState State, string? RunId, int Workers, long Iteration, long Total, string? LastError, Worker[] WorkerList)
    {
        public static Status Of(RunProtocol.StatusReported s) => new(s.State, s.RunId, s.Workers, s.Iteration, s.Total, s.LastError,
            (s.Members ?? []).Select(m => new Worker(m.WorkerId, m.Device, m.Rank)).ToArray());

        public RunProtocol.StatusReported ToProtocol() =>
            new(State, RunId, Workers, Iteration, LastError, Total, (WorkerList ?? []).Select(w => new RunProtocol.WorkerStatus(w.WorkerId, w.Device, w.Rank)).ToArray());
    }

    /// <summary>A run folder; <paramref name="Folder"/>: its path under the seed's runs root, which the run routes also take.</summary>
    public sealed record Run(string Name, string Output, string Folder, RunFolderState State, long Iteration, long Total, string? Best, DateTime UpdatedUtc)
    {
        public RunSummary ToProtocol() => new(Name, Output, State, Iteration, Total, Best, UpdatedUtc);
    }

    public sealed record RunsListed(Run[] Runs, int Omitted);

    public sealed record Submitted(string RunId, int Workers, string Output);

    /// <summary>The first event of a stream (and one per change of the coordinator's state).</summary>
    public sealed record StateEvent(string RunId, RunState State, long Iteration);

    /// <summary>One row of metrics.csv: interval rows carry the losses, quality rows the scores.</summary>
    public sealed record MetricsRow(long Iteration, double? LossD, double? LossG, double? DReal, double? DFake, double? ImagesPerSecond,
        double? ElapsedSeconds, int? Skipped, double? Fid, double? ClassKl, double? ConfidentShare, int? Modes, double? HighQuality);

    public sealed record Metrics(MetricsRow[] Rows);

    /// <summary>A file of a run folder; <paramref name="Kind"/>: sample, checkpoint, export or other.</summary>
    public sealed record FileEntry(string Path, long Size, string Kind);

    public sealed record FilesListed(FileEntry[] Files);

    /// <summary>The kinds of <see cref="FileEntry.Kind"/>.</summary>
    public static readonly IReadOnlyList<string> FileKinds = ["sample", "checkpoint", "export", "other"];

    /// <summary>Server-sent event names of <c>GET /api/runs/{runId}/events</c>.</summary>
    public static class Events
    {
        public const string State = "state", Progress = "progress", Note = "note", Ended = "ended", Error = "error";
    }
}
