using Akka.Actor;
using Akka.Event;
using GanCluster.Training.Output;
using static GanCluster.Protocol.ArtifactProtocol;

namespace GanCluster.Actors.Coordinator;

/// <summary>
/// Writes a run's outputs on the seed's disk: metrics.csv, spec.json, and the samples and checkpoints that rank 0
/// uploads in chunks. Uploads land in a hidden folder and are published (checkpoints after their manifest verifies)
/// only when complete.
/// </summary>
public sealed class ArtifactWriter : ReceiveActor
{
    public sealed record Start(string RunId, string Output, string SpecJson, int Keep);
    public sealed record Append(MetricsRow Row);
    /// <summary>Told to the parent when an upload is published (Error null) or failed.</summary>
    public sealed record Done(long Iteration, string? Error);

    readonly ILoggingAdapter _log = Context.GetLogger();
    string? _runId;
    string _output = "";
    int _keep = 1;
    MetricsCsv? _metrics;

    public ArtifactWriter()
    {
        Receive<Start>(s =>
        {
            _metrics?.Dispose();
            (_runId, _output, _keep) = (s.RunId, Path.GetFullPath(s.Output), s.Keep);
            Directory.CreateDirectory(_output);
            File.WriteAllText(Path.Combine(_output, "spec.json"), s.SpecJson);
            _metrics = new MetricsCsv(Path.Combine(_output, "metrics.csv"));
            _log.Info("run {0}: outputs under {1}", s.RunId, _output);
        });
        Receive<Append>(a => _metrics?.Append(a.Row));
        Receive<FileChunk>(OnChunk);
        Receive<ArtifactsUploaded>(OnUploaded);
    }

    string Staging(long iteration) => Path.Combine(_output, $".upload-{iteration:D8}");

    void OnChunk(FileChunk c)
    {
        if (c.RunId != _runId || c.RelativePath.Contains("..", StringComparison.Ordinal) || Path.IsPathRooted(c.RelativePath))
        {
            _log.Warning("rejected chunk {0} of run {1}", c.RelativePath, c.RunId);
            return;
        }
        var path = Path.Combine(Staging(c.Iteration), c.RelativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var fs = new FileStream(path, c.Offset == 0 ? FileMode.Create : FileMode.Open, FileAccess.Write))
        {
            fs.Seek(c.Offset, SeekOrigin.Begin);
            fs.Write(c.Data);
            if (c.Last) fs.Flush(flushToDisk: true);
        }
        Sender.Tell(new ChunkAck(c.RunId, c.RelativePath, c.Offset));
    }

    void OnUploaded(ArtifactsUploaded u)
    {
        if (u.RunId != _runId) return;
        var staging = Staging(u.Iteration);
        try
        {
            var samples = Path.Combine(staging, "samples");
            if (Directory.Exists(samples))
            {
                Directory.CreateDirectory(Path.Combine(_output, "samples"));
                foreach (var f in Directory.GetFiles(samples))
                    File.Move(f, Path.Combine(_output, "samples", Path.GetFileName(f)), overwrite: true);
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
                foreach (var old in CheckpointStore.List(_output).Skip(_keep)) Directory.Delete(old, true);
            }
            Directory.Delete(staging, true);
            Context.Parent.Tell(new Done(u.Iteration, null));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            _log.Error(e, "publishing the outputs of iteration {0} failed", u.Iteration);
            Context.Parent.Tell(new Done(u.Iteration, e.Message));
        }
    }

    protected override void PostStop() => _metrics?.Dispose();
}
