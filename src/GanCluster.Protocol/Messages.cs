namespace GanCluster.Protocol;

/// <summary>Marker for every GanCluster control message: bound to Hyperion (unsafe types off) in the node config.</summary>
public interface IGanClusterMessage;

public enum StepPhase { Discriminator, Generator }

/// <summary>The coordinator's state (Idle → Resuming → Starting → Running ⇄ Saving → Finishing → Idle; Recovering, Cancelling, Failed).</summary>
public enum RunState { Idle, Starting, Running, Saving, Recovering, Resuming, Finishing, Cancelling, Failed }

/// <summary>How a run ended.</summary>
public enum RunOutcome { Completed, Failed, Cancelled }

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

    /// <summary>Something a user following the run should know: a worker lost or joined, a re-form, a resume, a save.</summary>
    public sealed record RunNoted(string RunId, string Text, bool Warning) : IGanClusterMessage;

    /// <summary>The run is over, with a message.</summary>
    public sealed record RunEnded(string RunId, RunOutcome Outcome, string Message, string Output, string? FinalChecksum) : IGanClusterMessage;

    /// <summary>
    /// Follow a run already submitted: the sender gets its progress and its end. A client sends it again now and then,
    /// so it keeps following after the coordinator moved to another seed or its connection was re-established.
    /// Replies <see cref="WatchAck"/>, the <see cref="RunEnded"/> of a run that is over, or <see cref="WatchNack"/>.
    /// </summary>
    public sealed record WatchRun(string RunId) : IGanClusterMessage;
    public sealed record WatchAck(string RunId, RunState State, long Iteration) : IGanClusterMessage;
    public sealed record WatchNack(string RunId, string Reason) : IGanClusterMessage;

    /// <summary>
    /// Stop a run at its next iteration boundary, after a checkpoint of that iteration is written, so the same spec
    /// submitted again continues from it. <paramref name="By"/> names who asked (for the logs). Replies
    /// <see cref="CancelAck"/> or <see cref="CancelNack"/>; watchers then get <see cref="RunEnded"/> with status <c>cancelled</c>.
    /// </summary>
    public sealed record CancelRun(string RunId, string By) : IGanClusterMessage;
    public sealed record CancelAck(string RunId, string Message) : IGanClusterMessage;
    public sealed record CancelNack(string RunId, string Reason) : IGanClusterMessage;

    public sealed record GetStatus : IGanClusterMessage;
    /// <summary>The seed would not take <paramref name="Message"/> (a type) from a client, and why.</summary>
    public sealed record Refused(string Message, string Reason) : IGanClusterMessage;
    /// <summary>The coordinator's state; <paramref name="Members"/>: every registered worker, with its rank in the run (-1: none).</summary>
    public sealed record StatusReported(RunState State, string? RunId, int Workers, long Iteration, string? LastError, long Total = 0,
        WorkerStatus[]? Members = null) : IGanClusterMessage;
    public sealed record WorkerStatus(string WorkerId, string Device, int Rank);

    /// <summary>List the runs under the seed's runs root (Node:RunsRoot). Replies <see cref="RunsListed"/>.</summary>
    public sealed record ListRuns : IGanClusterMessage;
    /// <summary>The runs, newest first; <paramref name="Omitted"/> more were left out (the listing is bounded).</summary>
    public sealed record RunsListed(RunSummary[] Runs, int Omitted) : IGanClusterMessage;
}

/// <summary>What a run folder says about its run.</summary>
public enum RunFolderState
{
    /// <summary>Nothing trained yet (no checkpoint, no metrics).</summary>
    NotStarted,
    /// <summary>Trained part of its iterations and stopped (cancelled, crashed, diverged): the same spec resumes it.</summary>
    Stopped,
    /// <summary>Trained all its iterations: its newest checkpoint, or its last metrics row, is at its last iteration.</summary>
    Completed,
    /// <summary>A process trains it now (a local run holds its lock; a cluster's coordinator drives it).</summary>
    Running,
}

/// <summary>
/// One run folder: its spec's name, where it is, how far it got (the newest checkpoint, or the last metrics row when
/// further), and its best quality score (lowest Fréchet distance for images, best mode quality for 2-D data), if any.
/// </summary>
public sealed record RunSummary(string Name, string Output, RunFolderState State, long Iteration, long Total, string? Best, DateTime UpdatedUtc);

/// <summary>
/// Worker ↔ coordinator: membership, forming a run's ring, and the boundaries of training (segments between log
/// lines and saves; the updates inside a segment never wait for the coordinator). A formation is one set of ranks
/// with its own data-plane ring; <c>Formation</c> names it, so a late reply from an earlier formation is never mistaken
/// for a current one.
/// </summary>
public static class WorkerProtocol
{
    /// <summary>A worker announces itself (repeated until acknowledged).</summary>
    public sealed record RegisterWorker(string WorkerId, string Device, string DataHost, int DataPort) : IGanClusterMessage;
    public sealed record WorkerRegistered(string WorkerId) : IGanClusterMessage;

    /// <summary>
    /// Where a formation starts. <paramref name="Position"/> is the last update applied (null: none yet): the most
    /// advanced state every member can reach, held by rank 0. With <paramref name="Checkpoint"/> rank 0 loads that
    /// checkpoint folder first (the coordinator was restarted, or no replica survived). Rank 0's weights, BatchNorm
    /// statistics and optimizer states then go to every rank. <paramref name="ConsecutiveSkips"/>: the run's count of
    /// non-finite updates in a row so far (the NaN guard goes on counting from it).
    /// </summary>
    public sealed record ResumeFrom(StepKey? Position, long SamplesConsumed, string? Checkpoint, long ConsecutiveSkips = 0);

    /// <summary>
    /// Build (or keep) G, D and optimizers, take this rank's shard, and connect the data-plane ring.
    /// <paramref name="Resume"/> null: a fresh run (initial weights from rank 0).
    /// </summary>
    public sealed record PrepareRun(string RunId, string SpecJson, int Rank, int WorldSize, int[] LocalBatches, long Formation, PeerAddress[] Peers,
        ResumeFrom? Resume) : IGanClusterMessage;
    public sealed record RunPrepared(string RunId, long Formation, int Rank, string WorkerId, int DatasetSize) : IGanClusterMessage;
    public sealed record PrepareFailed(string RunId, long Formation, int Rank, string WorkerId, string Reason) : IGanClusterMessage;

    /// <summary>
    /// Train from the formation's position up to iteration <paramref name="Until"/> (the next log line, save or the end)
    /// without the coordinator: each update is applied as soon as its all-reduce completes. The segment ends earlier,
    /// after the same iteration on every rank, when some rank asked to yield (<see cref="YieldSegment"/>).
    /// <paramref name="ReportChecksum"/>: end with the parameters' checksum, which the coordinator compares.
    /// </summary>
    public sealed record RunSegment(string RunId, long Formation, long Until, bool ReportChecksum) : IGanClusterMessage;

    /// <summary>Stop the segment at the next iteration boundary (a worker joins or leaves, a client cancels).</summary>
    public sealed record YieldSegment(string RunId, long Formation) : IGanClusterMessage;

    /// <summary>
    /// The worker's segment is over at <paramref name="Last"/>: stats of the logging window when it ended on a log line,
    /// the checksum when asked. <paramref name="Skipped"/>: updates the NaN guard skipped in the segment;
    /// <paramref name="Consecutive"/>: non-finite updates in a row at its end; <paramref name="Diverged"/>: the guard
    /// stopped the run (the same on every rank, since every rank holds the same averages).
    /// </summary>
    public sealed record SegmentDone(string RunId, long Formation, int Rank, StepKey? Last, int Samples, WindowStats? Stats, string? Checksum,
        long Skipped, long Consecutive, bool Diverged) : IGanClusterMessage;

    /// <summary>How often a worker in a long segment sends <see cref="SegmentProgress"/>.</summary>
    public const int ProgressEverySeconds = 10;

    /// <summary>A long segment is still advancing (sent every <see cref="ProgressEverySeconds"/>, so the coordinator's timeout measures silence, not work).</summary>
    public sealed record SegmentProgress(string RunId, long Formation, int Rank, StepKey? Last) : IGanClusterMessage;

    /// <summary>An update failed here (often: the ring broke because a peer died).</summary>
    public sealed record StepFailed(string RunId, long Formation, StepKey Step, int Rank, string Reason) : IGanClusterMessage;

    /// <summary>Drop the segment in flight and the ring; keep the replica. Answered with <see cref="StepAborted"/>.</summary>
    public sealed record AbortStep(string RunId, long Formation) : IGanClusterMessage;
    /// <summary><paramref name="LastApplied"/>: the last update this replica applied (or skipped); null with no replica.</summary>
    public sealed record StepAborted(string RunId, long Formation, string WorkerId, bool HasReplica, StepKey? LastApplied) : IGanClusterMessage;

    /// <summary>Make BatchNorm statistics identical, report the checksum; rank 0 saves the final outputs.</summary>
    public sealed record FinishRun(string RunId, long Formation, string ArtifactsPath, string CoordinatorJson) : IGanClusterMessage;
    public sealed record RunFinishedOnWorker(string RunId, long Formation, int Rank, string Checksum) : IGanClusterMessage;

    /// <summary>
    /// At an iteration boundary: sync BatchNorm statistics; rank 0 snapshots samples (and a checkpoint holding
    /// <paramref name="CoordinatorJson"/>) in memory, answers <see cref="ArtifactsSnapshotted"/>, then uploads in the background.
    /// </summary>
    public sealed record SaveArtifacts(string RunId, long Formation, long Iteration, bool Checkpoint, string CoordinatorJson) : IGanClusterMessage;
    /// <summary>Rank 0 holds the save in memory: training goes on while it uploads. <paramref name="StallMs"/>: how long the snapshot took.</summary>
    public sealed record ArtifactsSnapshotted(string RunId, long Formation, long Iteration, double StallMs) : IGanClusterMessage;

    /// <summary>Drop the run: release models, data and the ring.</summary>
    public sealed record StopRun(string RunId, string Reason) : IGanClusterMessage;

    /// <summary>A worker shutting down gracefully (SIGTERM, scale-down) asks to leave; not counted as a failure.</summary>
    public sealed record LeaveRun(string WorkerId) : IGanClusterMessage;
    /// <summary>The worker is no longer part of any run and may stop.</summary>
    public sealed record LeaveAccepted(string WorkerId) : IGanClusterMessage;

    /// <summary>Means of a logging window on one worker; <paramref name="AllReduceMs"/>: its mean all-reduce time per update.</summary>
    public sealed record WindowStats(double LossD, double LossG, double DReal, double DFake, int Iterations, double AllReduceMs = 0);
}

/// <summary>
/// Rank 0 ↔ seed: run outputs (samples, checkpoints) go up in chunks below Akka's frame limit; the checkpoint a resumed
/// run starts from comes down the same way, so workers need no shared volume.
/// </summary>
public static class ArtifactProtocol
{
    public const int ChunkBytes = 64 * 1024;

    public sealed record FileChunk(string RunId, long Iteration, string RelativePath, long Offset, byte[] Data, bool Last) : IGanClusterMessage;
    public sealed record ChunkAck(string RunId, string RelativePath, long Offset) : IGanClusterMessage;
    /// <summary>The seed will not take this upload (its run ended, or saving it already failed): rank 0 stops sending it at once.</summary>
    public sealed record ChunkRefused(string RunId, string RelativePath, string Reason) : IGanClusterMessage;

    /// <summary>All files of one save are uploaded; the seed verifies and publishes them.</summary>
    public sealed record ArtifactsUploaded(string RunId, long Iteration, string[] Files, bool Checkpoint) : IGanClusterMessage;
    public sealed record ArtifactsSaved(string RunId, long Iteration) : IGanClusterMessage;
    public sealed record ArtifactsFailed(string RunId, long Iteration, string Reason) : IGanClusterMessage;

    /// <summary>Rank 0 of a resumed run asks the seed for a checkpoint's files; answered with <see cref="CheckpointListed"/> or <see cref="CheckpointRefused"/>.</summary>
    public sealed record ListCheckpoint(string RunId, string Checkpoint) : IGanClusterMessage;
    public sealed record CheckpointListed(string RunId, string Checkpoint, string[] Files, long[] Sizes) : IGanClusterMessage;
    /// <summary>Up to <see cref="ChunkBytes"/> of one of its files from <paramref name="Offset"/>; answered with a <see cref="FileChunk"/> or <see cref="CheckpointRefused"/>.</summary>
    public sealed record ReadCheckpoint(string RunId, string Checkpoint, string File, long Offset) : IGanClusterMessage;
    public sealed record CheckpointRefused(string RunId, string Checkpoint, string Reason) : IGanClusterMessage;
}
