namespace GanCluster.Protocol;

/// <summary>Marker for every GanCluster control message: bound to Hyperion (unsafe types off) in the node config.</summary>
public interface IGanClusterMessage;

public enum StepPhase { Discriminator, Generator }

/// <summary>One update of Algorithm 1: iteration (0-based), phase, D sub-step (0 for G).</summary>
public sealed record StepKey(long Iteration, StepPhase Phase, int SubStep)
{
    public override string ToString() => Phase == StepPhase.Discriminator ? $"it{Iteration}/D{SubStep}" : $"it{Iteration}/G";
}

/// <summary>A worker's data-plane endpoint, by rank.</summary>
public sealed record PeerAddress(int Rank, string Host, int Port);

/// <summary>Client ↔ coordinator: submitting and following a run.</summary>
public static class RunProtocol
{
    /// <summary>Start a run from a JSON run spec; with <paramref name="Watch"/> the sender also gets progress and the end.</summary>
    public sealed record SubmitRun(string SpecJson, bool Watch) : IGanClusterMessage;
    public sealed record SubmitAck(string RunId, int Workers, string Output) : IGanClusterMessage;
    public sealed record SubmitNack(string Reason, string[] Errors) : IGanClusterMessage;

    /// <summary>One logging interval, the same columns as a local run's console line.</summary>
    public sealed record ProgressReported(string RunId, long Iteration, long Total, double LossD, double LossG, double DReal, double DFake,
        double ImagesPerSecond, double ElapsedSeconds) : IGanClusterMessage;

    /// <summary>The run is over: <c>completed</c> or <c>failed</c>, with a message.</summary>
    public sealed record RunEnded(string RunId, string Status, string Message, string Output, string? FinalChecksum) : IGanClusterMessage;

    public sealed record GetStatus : IGanClusterMessage;
    public sealed record StatusReported(string State, string? RunId, int Workers, long Iteration, string? LastError) : IGanClusterMessage;
}

/// <summary>Worker ↔ coordinator: membership, preparing a run, and driving every update.</summary>
public static class WorkerProtocol
{
    /// <summary>A worker announces itself (repeated until acknowledged).</summary>
    public sealed record RegisterWorker(string WorkerId, string Device, string DataHost, int DataPort) : IGanClusterMessage;
    public sealed record WorkerRegistered(string WorkerId) : IGanClusterMessage;

    /// <summary>Build G, D and optimizers from the spec, load the shard, and connect the data-plane ring.</summary>
    public sealed record PrepareRun(string RunId, string SpecJson, int Rank, int WorldSize, int[] LocalBatches, long Session, PeerAddress[] Peers,
        int ChecksumEvery) : IGanClusterMessage;
    public sealed record RunPrepared(string RunId, int Rank, string WorkerId, int DatasetSize) : IGanClusterMessage;
    public sealed record PrepareFailed(string RunId, int Rank, string WorkerId, string Reason) : IGanClusterMessage;

    /// <summary>
    /// Apply the averaged gradients of <paramref name="Commit"/> (the previous update, reduced everywhere), then compute
    /// this update's gradients and all-reduce them. Nothing of <paramref name="Step"/> is applied until a later commit.
    /// </summary>
    public sealed record ExecuteStep(string RunId, StepKey Step, StepKey? Commit, bool ReportStats, bool ReportChecksum) : IGanClusterMessage;

    /// <summary>
    /// The worker holds the averaged gradients of <paramref name="Step"/>. <paramref name="NonFinite"/>: the average has a
    /// NaN or inf (every rank sees the same average, so every rank skips that update). Stats and checksum when asked.
    /// </summary>
    public sealed record StepReduced(string RunId, StepKey Step, int Rank, int Samples, WindowStats? Stats, string? Checksum, bool NonFinite = false) : IGanClusterMessage;
    public sealed record StepFailed(string RunId, StepKey Step, int Rank, string Reason) : IGanClusterMessage;

    /// <summary>Apply the last reduced update (end of run), make BatchNorm statistics identical, report the checksum.</summary>
    public sealed record FinishRun(string RunId, StepKey Commit, string ArtifactsPath) : IGanClusterMessage;
    public sealed record RunFinishedOnWorker(string RunId, int Rank, string Checksum) : IGanClusterMessage;

    /// <summary>Apply <paramref name="Commit"/>, sync BatchNorm statistics, then rank 0 writes samples (and a checkpoint) and uploads them.</summary>
    public sealed record SaveArtifacts(string RunId, long Iteration, bool Checkpoint, StepKey Commit) : IGanClusterMessage;

    /// <summary>Drop the run: release models, data and the ring.</summary>
    public sealed record StopRun(string RunId, string Reason) : IGanClusterMessage;

    /// <summary>Means of a logging window on one worker.</summary>
    public sealed record WindowStats(double LossD, double LossG, double DReal, double DFake, int Iterations);
}

/// <summary>Rank 0 → seed: run outputs (samples, checkpoints) in chunks below Akka's frame limit.</summary>
public static class ArtifactProtocol
{
    public const int ChunkBytes = 64 * 1024;

    public sealed record FileChunk(string RunId, long Iteration, string RelativePath, long Offset, byte[] Data, bool Last) : IGanClusterMessage;
    public sealed record ChunkAck(string RunId, string RelativePath, long Offset) : IGanClusterMessage;

    /// <summary>All files of one save are uploaded; the seed verifies and publishes them.</summary>
    public sealed record ArtifactsUploaded(string RunId, long Iteration, string[] Files, bool Checkpoint) : IGanClusterMessage;
    public sealed record ArtifactsSaved(string RunId, long Iteration) : IGanClusterMessage;
    public sealed record ArtifactsFailed(string RunId, long Iteration, string Reason) : IGanClusterMessage;
}
