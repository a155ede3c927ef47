using GanCluster.Engine.Coordinator;
using Akka.Actor;
using Akka.Event;
using GanCluster.Training.Output;
using GanCluster.Training.Core;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Actors.Coordinator;

/// <summary>
/// The checkpoint actor: persists a run on the seed's disk (a shared volume on a real cluster): metrics.csv, spec.json,
/// and the samples and checkpoints that rank 0 snapshots in memory and uploads in chunks while training goes on.
/// Uploads land in a hidden folder and are published only when complete; a checkpoint only after every file matches
/// its manifest, then renamed into place (atomic) and pruned to <c>checkpoint.keep</c>. It also serves the run's
/// checkpoints back, file by file in chunks, to rank 0 of a resumed run.
/// <para>
/// Workers address it directly (a child of the coordinator: its path is the coordinator's plus <see cref="Name"/>), so
/// bulk bytes never queue in the coordinator's mailbox. It checks every sender itself: reads come only from worker
/// members, uploads only from the node the coordinator named as the run's rank 0 (<see cref="AllowUploads"/>).
/// </para>
/// </summary>
public sealed class CheckpointActor : ReceiveActor
{
    /// <param name="ResumeAt">Resuming at this iteration: metrics rows after it are dropped (they are trained again).</param>
    /// <param name="DatasetKind">ring8 and grid25 samples are rated for mode quality as they are published.</param>
    public sealed record Start(string RunId, string Output, string SpecJson, int Keep, long? ResumeAt = null, string DatasetKind = "");
    /// <param name="AllReduceMs">The window's mean all-reduce time per update (for TensorBoard; metrics.csv keeps a local run's columns).</param>
    public sealed record Append(MetricsRow Row, double AllReduceMs = 0);
    /// <summary>Told to the parent when an upload is published (Error null) or failed; with the samples' mode quality (ring8, grid25).</summary>
    public sealed record Done(string RunId, long Iteration, string? Error, string? Quality = null);
    /// <summary>From the coordinator: the node of a worker it asked to save as rank 0 of <paramref name="RunId"/> may upload.</summary>
    public sealed record AllowUploads(string RunId, Address Node);

    /// <summary>The actor's name under the coordinator.</summary>
    public const string Name = "checkpoints";

    readonly Func<Address, bool> _isWorkerNode;
    // The nodes of the workers asked to save as rank 0 of a run: the only ones whose uploads are taken (a worker
    // uploads through asks, whose senders are temporary actors on its node).
    (string RunId, HashSet<Address> Nodes) _uploaders = ("", []);

    readonly ILoggingAdapter _log = Context.GetLogger();
    string? _runId;
    string _output = "";
    int _keep = 1;
    string _datasetKind = "";
    MetricsCsv? _metrics;
    bool _keepBest;                        // checkpoint.keepBest: spare the checkpoint with the best mode coverage (2-D runs)
    double? _lastElapsed;                  // elapsed_s of the last interval row: a quality row's time
    TensorBoardLog? _tensorBoard;          // writes on its own thread: this mailbox never waits on it
    readonly HashSet<long> _failed = [];   // uploads of this run that already failed: their later chunks are dropped

    /// <param name="isWorkerNode">Whether a sender's node may read checkpoints (default: a cluster member with the worker role).</param>
    public CheckpointActor(Func<Address, bool>? isWorkerNode = null)
    {
        _isWorkerNode = isWorkerNode ?? (address => WorkerMembers.Contains(Context.System, address));
        Receive<AllowUploads>(a =>
        {
            if (_uploaders.RunId != a.RunId) _uploaders = (a.RunId, []);
            _uploaders.Nodes.Add(a.Node);
        });
        Receive<Start>(s =>
        {
            _metrics?.Dispose();
            _metrics = null;
            _tensorBoard?.Dispose();
            _tensorBoard = null;
            _failed.Clear();
            (_runId, _output, _keep) = (s.RunId, Path.GetFullPath(s.Output), s.Keep);
            _datasetKind = s.DatasetKind;
            _keepBest = KeepBest(s.SpecJson);
            _lastElapsed = null;
            Guarded(s.RunId, -1, _output, () =>
            {
                Directory.CreateDirectory(_output);
                File.WriteAllText(Path.Combine(_output, "spec.json"), s.SpecJson);
                var metrics = Path.Combine(_output, "metrics.csv");
                if (s.ResumeAt is { } at) MetricsCsv.Trim(metrics, at);
                _metrics = new MetricsCsv(metrics);
                BestCheckpoint.Reset(_output, _keepBest);
                var log = _log;
                _tensorBoard = new TensorBoardLog(_output, warn: m => log.Warning("run {0}: {1}", s.RunId, m));
                if (s.ResumeAt is not null) _tensorBoard.Resumed(metrics);
                _log.Info("run {0}: outputs under {1}", s.RunId, _output);
            });
        });
        Receive<Append>(a =>
        {
            Guarded(_runId ?? "", a.Row.Iteration, Path.Combine(_output, "metrics.csv"), () =>
            {
                _metrics?.Append(a.Row);
                _lastElapsed = a.Row.ElapsedSeconds;
            });
            _tensorBoard?.Metrics(a.Row);
            _tensorBoard?.Scalars(a.Row.Iteration, new Dictionary<string, double> { [TensorBoardLog.AllReduceTag] = a.AllReduceMs });
        });
        Receive<FileChunk>(c => FromUploader(c.GetType().Name, c.RunId), OnChunk);
        Receive<ArtifactsUploaded>(u => FromUploader(u.GetType().Name, u.RunId), OnUploaded);
        // Rank 0 could not send a save (through the coordinator, which forwards it): a failed save like any other.
        Receive<ArtifactsFailed>(f => FromUploader(f.GetType().Name, f.RunId),
            f => Context.Parent.Tell(new Done(f.RunId, f.Iteration, $"rank 0 could not upload them: {f.Reason}")));
        Receive<ListCheckpoint>(l => FromWorker(l.GetType().Name), OnList);
        Receive<ReadCheckpoint>(r => FromWorker(r.GetType().Name), OnRead);
        // Anything else (or a refused sender) is dropped without an answer; the refusal is logged.
        ReceiveAny(_ => { });
    }

    /// <summary>Uploads come only from the node of a worker that was asked to save as rank 0 of this run.</summary>
    bool FromUploader(string what, string runId)
    {
        var ok = _uploaders.RunId == runId && _uploaders.Nodes.Contains(Sender.Path.Address);
        if (!ok) _log.Warning("refused {0} of run {1} from {2}: not the run's rank 0 asked to save", what, runId, Sender.Path);
        return ok;
    }

    bool FromWorker(string what)
    {
        var ok = _isWorkerNode(Sender.Path.Address);
        if (!ok) _log.Warning("refused {0} from {1}: not a cluster member with the worker role", what, Sender.Path);
        return ok;
    }

    /// <summary>The checkpoint folder if it is one of this run's (nothing else on the seed's disk is served), else null and why.</summary>
    string? Served(string runId, string checkpoint, out string why)
    {
        why = "";
        var dir = Path.GetFullPath(checkpoint);
        if (runId != _runId) why = $"the seed's outputs are open for run {_runId ?? "(none)"}, not {runId}";
        else if (!string.Equals(Path.GetDirectoryName(dir), Path.GetFullPath(CheckpointStore.Folder(_output)), StringComparison.Ordinal))
            why = $"{checkpoint} is not a checkpoint of run {runId}";
        else if (!Directory.Exists(dir)) why = $"{checkpoint} does not exist on the seed";
        else return dir;
        return null;
    }

    void OnList(ListCheckpoint l)
    {
        var dir = Served(l.RunId, l.Checkpoint, out var why);
        if (dir is null)
        {
            Sender.Tell(new CheckpointRefused(l.RunId, l.Checkpoint, why));
            return;
        }
        var files = Directory.GetFiles(dir).Select(f => new FileInfo(f)).OrderBy(f => f.Name, StringComparer.Ordinal).ToList();
        _log.Info("run {0}: serving {1} to {2} ({3:F1} MB)", l.RunId, dir, Sender.Path.Address, files.Sum(f => f.Length) / 1e6);
        Sender.Tell(new CheckpointListed(l.RunId, l.Checkpoint, files.Select(f => f.Name).ToArray(), files.Select(f => f.Length).ToArray()));
    }

    void OnRead(ReadCheckpoint r)
    {
        var dir = Served(r.RunId, r.Checkpoint, out var why);
        var path = dir is null ? null : Path.Combine(dir, r.File);
        if (path is not null && (r.File != Path.GetFileName(r.File) || !File.Exists(path))) (path, why) = (null, $"{r.File} is not a file of {r.Checkpoint}");
        if (path is null)
        {
            Sender.Tell(new CheckpointRefused(r.RunId, r.Checkpoint, why));
            return;
        }
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read);
        var data = new byte[(int)Math.Clamp(fs.Length - r.Offset, 0, ChunkBytes)];
        fs.Seek(r.Offset, SeekOrigin.Begin);
        fs.ReadExactly(data);
        Sender.Tell(new FileChunk(r.RunId, 0, r.File, r.Offset, data, r.Offset + data.Length >= fs.Length));
    }

    string Staging(long iteration) => Path.Combine(_output, $".upload-{iteration:D8}");

    /// <summary>
    /// Runs file IO for <paramref name="runId"/>; an IO error (a full disk, a missing permission, a file where a folder
    /// should be) is reported to the coordinator at once with the path and the OS's message, instead of restarting this
    /// actor and leaving rank 0 to time out. Returns whether it succeeded.
    /// </summary>
    bool Guarded(string runId, long iteration, string path, Action io)
    {
        try
        {
            io();
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var what = iteration < 0 ? "opening the run's outputs" : $"saving the outputs of iteration {iteration}";
            _log.Error(e, "run {0}: {1} failed at {2}", runId, what, path);
            if (iteration >= 0 && !_failed.Add(iteration)) return false;   // said once per upload
            if (iteration >= 0) DeleteStaging(iteration);
            // .NET names the path in most IO messages; name it once.
            Context.Parent.Tell(new Done(runId, iteration, e.Message.Contains(path, StringComparison.Ordinal) ? e.Message : $"{path}: {e.Message}"));
            return false;
        }
    }

    /// <summary>An upload's staging folder, gone: nothing half-written stays behind (the published outputs are untouched).</summary>
    void DeleteStaging(long iteration)
    {
        try
        {
            if (Directory.Exists(Staging(iteration))) Directory.Delete(Staging(iteration), true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Warning("could not remove the staging folder {0}: {1}", Staging(iteration), e.Message);
        }
    }

    static readonly HashSet<string> CheckpointFiles = [.. CheckpointStore.Files, "coordinator.json", "manifest.json"];

    /// <summary>
    /// What an upload of <paramref name="iteration"/> may contain: that iteration's samples (PNG, CSV) and its checkpoint's
    /// files, by name. Anything else (a script in samples/, a file elsewhere) is refused before it touches the disk.
    /// </summary>
    public static bool Expected(string relativePath, long iteration)
    {
        var stem = $"{CheckpointStore.Prefix}{iteration:D8}";
        var parts = relativePath.Split('/');
        return parts switch
        {
            ["samples", var f] => f == stem + ".png" || f == stem + ".csv",
            ["checkpoints", var dir, var f] => dir == stem && CheckpointFiles.Contains(f),
            _ => false,
        };
    }

    void OnChunk(FileChunk c)
    {
        if (c.RunId != _runId || !Expected(c.RelativePath, c.Iteration))
        {
            _log.Warning("rejected chunk {0} of run {1}", c.RelativePath, c.RunId);
            Sender.Tell(new ChunkRefused(c.RunId, c.RelativePath, c.RunId != _runId
                ? $"the seed's outputs are open for run {_runId ?? "(none)"}, not {c.RunId}" : $"{c.RelativePath} is not an output of iteration {c.Iteration}"));
            return;
        }
        if (_failed.Contains(c.Iteration))
        {
            Sender.Tell(new ChunkRefused(c.RunId, c.RelativePath, $"saving the outputs of iteration {c.Iteration} already failed on the seed"));
            return;
        }
        var path = Path.Combine(Staging(c.Iteration), c.RelativePath);
        var written = Guarded(c.RunId, c.Iteration, path, () =>
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var fs = new FileStream(path, c.Offset == 0 ? FileMode.Create : FileMode.Open, FileAccess.Write);
            fs.Seek(c.Offset, SeekOrigin.Begin);
            fs.Write(c.Data);
            if (c.Last) fs.Flush(flushToDisk: true);
        });
        Sender.Tell(written ? new ChunkAck(c.RunId, c.RelativePath, c.Offset)
            : new ChunkRefused(c.RunId, c.RelativePath, $"saving the outputs of iteration {c.Iteration} failed on the seed"));
    }

    void OnUploaded(ArtifactsUploaded u)
    {
        if (u.RunId != _runId || _failed.Contains(u.Iteration)) return;
        var staging = Staging(u.Iteration);
        try
        {
            var samples = Path.Combine(staging, "samples");
            string? quality = null, png = null;
            ModeQualityResult? modes = null;
            if (Directory.Exists(samples))
            {
                Directory.CreateDirectory(Path.Combine(_output, "samples"));
                foreach (var f in Directory.GetFiles(samples))
                {
                    var published = Path.Combine(_output, "samples", Path.GetFileName(f));
                    File.Move(f, published, overwrite: true);
                    // 2500 points: a few ms, and the same check as a local run's "final samples" line.
                    if (published.EndsWith(".csv", StringComparison.Ordinal)) modes = SampleCsv.Quality(published, _datasetKind);
                    if (published.EndsWith(".png", StringComparison.Ordinal)) png = published;
                }
                quality = modes?.ToString();
                // The quality row of metrics.csv (2-D runs; image runs of a cluster are scored with `gancluster eval`).
                if (modes is not null) _metrics?.AppendQuality(u.Iteration, _lastElapsed, QualityColumns.Of(modes));
                if (png is not null) _tensorBoard?.Samples(u.Iteration, png, modes);
            }
            if (u.Checkpoint)
            {
                var name = $"{CheckpointStore.Prefix}{u.Iteration:D8}";
                var uploaded = Path.Combine(staging, "checkpoints", name);
                var problem = CheckpointStore.Verify(uploaded);
                if (problem is not null) throw new InvalidDataException($"uploaded checkpoint {name}: {problem}");
                var root = CheckpointStore.Folder(_output);
                Directory.CreateDirectory(root);
                var final = Path.Combine(root, name);
                if (Directory.Exists(final)) Directory.Delete(final, true);
                Directory.Move(uploaded, final);
                if (_keepBest && modes is not null) BestCheckpoint.Offer(_output, BestCheckpoint.Of(u.Iteration, QualityColumns.Of(modes)));
                CheckpointStore.Prune(_output, _keep);   // the newest checkpoint.keep, and best.json's with keepBest
            }
            Directory.Delete(staging, true);
            // A published save has its TensorBoard points written too: the last one ends the run, and whoever was told
            // "completed" may read them at once.
            _tensorBoard?.Flush();
            Context.Parent.Tell(new Done(u.RunId, u.Iteration, null, quality));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            _log.Error(e, "publishing the outputs of iteration {0} failed", u.Iteration);
            _failed.Add(u.Iteration);
            DeleteStaging(u.Iteration);
            Context.Parent.Tell(new Done(u.RunId, u.Iteration, $"publishing under {_output}: {e.Message}"));
        }
    }

    static bool KeepBest(string specJson)
    {
        try { return System.Text.Json.JsonSerializer.Deserialize<GanCluster.Training.Spec.RunSpec>(specJson, GanCluster.Training.Spec.RunSpec.Json)?.Checkpoint.KeepBest ?? false; }
        catch (System.Text.Json.JsonException) { return false; }
    }

    protected override void PostStop()
    {
        _metrics?.Dispose();
        _tensorBoard?.Dispose();
    }
}
