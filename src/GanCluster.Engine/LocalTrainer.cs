using System.Diagnostics;
using GanCluster.DataPlane;
using GanCluster.Protocol;
using GanCluster.Training.Core;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using TorchSharp;
using static GanCluster.Protocol.WorkerProtocol;
using static TorchSharp.torch;

namespace GanCluster.Engine;

/// <summary>How a local run ended.</summary>
public sealed record LocalRunResult(long Iterations, string Output, string? LastCheckpoint, string? LastSamples, ModeQualityResult? Quality, bool Cancelled,
    bool Diverged = false, long Skipped = 0);

/// <summary>
/// The whole GAN run in one process: the engine's <see cref="ReplicaSession"/> with a world of one (an in-process
/// collective), walked through the same <see cref="Cadence"/> as a cluster run: metrics, samples and checkpoints.
/// </summary>
public sealed class LocalTrainer(RunSpec spec, Device device, TextWriter log)
{
    /// <summary>Called after each update is applied or skipped, in order (tests check the schedule through it).</summary>
    public Action<StepKey>? OnUpdateApplied { get; init; }

    /// <summary>Where the NaN guard decides (null: on a GPU's device, on the CPU's host); tests run the device path on the CPU.</summary>
    public bool? GuardOnDevice { get; init; }

    /// <summary>Where the quality classifier is cached (null: <see cref="Training.Quality.QualityClassifier.CacheDir"/>); tests pass their own.</summary>
    public string? QualityCacheDir { get; init; }

    /// <summary>Called after every iteration with where the run is and its latest logged row (the CLI draws its live progress line from it).</summary>
    public Action<RunProgress>? OnProgress { get; init; }

    public LocalRunResult Run(CancellationToken cancel = default)
    {
        var t = spec.Training;
        var output = spec.ResolvedOutput;
        // The folder is this run's, or new: another spec must not resume, prune or trim someone else's run.
        if (RunFolder.OwnershipProblem(output, spec) is { } problem)
            throw new InvalidRunSpecException("(run)", [new SpecError("output", problem)]);
        Directory.CreateDirectory(output);
        // One process per folder: two trainings appending to one metrics.csv and pruning each other's checkpoints would corrupt both.
        using var folderLock = RunLock.TryAcquire(output)
            ?? throw new InvalidRunSpecException("(run)", [new SpecError("output", $"{output} is being trained by another process ({RunLock.Holder(output) ?? "unknown"}); wait for it or choose another output")]);

        Banner($"Run {spec.Name}: {spec.Model.Kind} on {spec.Dataset.Kind}, k={t.K}, {t.Iterations} iterations, batch {t.BatchSize}, loss {t.Loss}");
        log.WriteLine($"    device {device} | seed {t.Seed} | output {Path.GetFullPath(output)}");
        if (t.Precision != "fp32" || t.MemoryFormat != "contiguous")
            log.WriteLine($"    compute {t.Precision}, {t.MemoryFormat} (fp32 masters, BatchNorm, losses and optimizer"
                          + (spec.Model.Kind == "mlp" ? "; D's first and G's last layer fp32)" : ")"));
        File.WriteAllText(Path.Combine(output, "spec.json"), spec.ToJson());

        Banner("Loading data and building models");
        var load = Stopwatch.StartNew();
        // On a GPU the data goes to the device when it fits (one index_select per batch), else batches are copied through pinned memory.
        using var session = new ReplicaSession("local", spec, device, GuardOnDevice) { OnUpdate = OnUpdateApplied };
        var replica = session.Replica;
        log.WriteLine($"    {session.DataSource}: {session.DatasetSize} samples of [{string.Join(", ", session.SampleShape)}] in {load.Elapsed.TotalSeconds:F1} s; {session.DataDescription}");
        if (t.BatchSize > session.DatasetSize)
            throw new InvalidRunSpecException("(run)", [new SpecError("training.batchSize", $"{t.BatchSize} is larger than the dataset ({session.DatasetSize} samples)")]);
        log.WriteLine($"    G: {Count(replica.G):N0} parameters, D: {Count(replica.D):N0} parameters, nz {replica.Nz}");

        // A fixed noise batch, drawn from its own generator, shows the same z at every sample point.
        using var fixedNoise = RunArtifacts.FixedNoise(replica, t.Seed);

        long start = 0;
        ResumeFrom? resume = null;
        var resumeFrom = CheckpointStore.LatestValid(output, out var skipped);
        foreach (var s in skipped) log.WriteLine($"    warning: skipping checkpoint {s}");
        if (resumeFrom is not null)
        {
            var state = CheckpointStore.ReadState(resumeFrom);
            start = state.Iteration;
            var shard = new ShardSampler(session.DatasetSize, rank: 0, worldSize: 1, seed: t.Seed).ShardSize;
            resume = new ResumeFrom(start == 0 ? null : new StepKey(start - 1, StepPhase.Generator, 0), state.DataEpoch * shard + state.DataOffset, resumeFrom);
            MetricsCsv.Trim(Path.Combine(output, "metrics.csv"), start);
            log.WriteLine($"    resuming from {resumeFrom} (iteration {start})");
        }
        // Event files for TensorBoard under OUTPUT/tensorboard/, written in the background (which may warn: log is shared).
        log = TextWriter.Synchronized(log);
        using var tensorBoard = new TensorBoardLog(output, warn: m => log.WriteLine($"    warning: {m}"));
        if (resumeFrom is not null) tensorBoard.Resumed(Path.Combine(output, "metrics.csv"));
        MetricsRow? latest = null;
        // The engine with a world of one: the same update loop, NaN guard and cadence as every cluster worker.
        session.Sync(rank: 0, worldSize: 1, t.BatchSize, InProcessCollective.Create(1)[0], resume);

        // The quality classifier (evaluation.quality saves) is read from its cache, or trained, before training starts.
        using var saveQuality = new SaveQuality(spec, output, log, QualityCacheDir);
        Banner("Training");
        using var metrics = new MetricsCsv(Path.Combine(output, "metrics.csv"));
        var cadence = Cadence.Of(spec);
        var total = Stopwatch.StartNew();
        var window = Stopwatch.StartNew();
        long windowIterations = 0;
        string? lastCheckpoint = null, lastSamples = null;
        ModeQualityResult? quality = null;
        var iteration = start;
        var cancelled = false;
        var checkpoints = new CheckpointWriter();
        // NaN guard (in the session): an update whose gradients are not all finite is skipped; after too many in a
        // row every later one is skipped too, and the run stops at the next read of the counts (log lines and saves).
        long skippedInWindow = 0;
        GuardCounts counts = default;
        var diverged = false;

        // Reads the guard's counts (one device sync); true when the run has diverged and must stop before logging or saving.
        bool Diverged()
        {
            (var newly, counts) = session.Mark();
            skippedInWindow += newly;
            return counts.Stopped;
        }

        while (iteration < t.Iterations)
        {
            if (cancel.IsCancellationRequested)
            {
                cancelled = true;
                break;
            }
            session.RunIteration(iteration);
            iteration++;
            windowIterations++;

            var logNow = cadence.IsLog(iteration);
            var save = cadence.SaveAt(iteration);
            var sampleNow = save?.Samples ?? false;
            var checkpointNow = save?.Checkpoint ?? false;
            if ((logNow || sampleNow || checkpointNow) && Diverged())
            {
                diverged = true;
                var st = replica.TakeStats();
                var last = new MetricsRow(iteration, st.LossD, st.LossG, st.DReal, st.DFake, 0, total.Elapsed.TotalSeconds, (int)skippedInWindow);
                metrics.Append(last);
                tensorBoard.Metrics(last);
                iteration = counts.StopIteration;
                log.WriteLine($"    diverged at iteration {iteration + 1}: {counts.Consecutive} consecutive updates with non-finite gradients were skipped; " +
                              $"stopping with the last good checkpoint ({lastCheckpoint ?? CheckpointStore.List(output).FirstOrDefault() ?? "none"}) intact");
                break;
            }
            if (logNow)
            {
                var row = MetricsRow.Of(iteration, replica.TakeStats(), windowIterations * t.BatchSize / Math.Max(window.Elapsed.TotalSeconds, 1e-9),
                    total.Elapsed.TotalSeconds, (int)skippedInWindow);
                skippedInWindow = 0;
                log.WriteLine(row.ToConsole(t.Iterations));
                metrics.Append(row);
                tensorBoard.Metrics(row);
                latest = row;
                window.Restart();
                windowIterations = 0;
            }
            if (sampleNow)
            {
                var (files, q) = RunArtifacts.WriteSamples(replica, fixedNoise, output, iteration);
                (lastSamples, quality) = (Path.Combine(output, files[0]), q);
                log.WriteLine($"    samples: {lastSamples}{(quality is null ? "" : $" ({quality})")}");
                tensorBoard.Samples(iteration, lastSamples, quality);
            }
            if (sampleNow || checkpointNow)
                saveQuality.At(iteration, total.Elapsed.TotalSeconds, checkpointNow, sampleNow ? quality : null, replica, metrics, tensorBoard);
            if (checkpointNow)
            {
                // Training waits for the in-memory snapshot only; the files are written in the background.
                checkpoints.Enqueue(output, replica, RunArtifacts.StateOf(replica, iteration, session.Cursor), spec.Checkpoint.Keep);
                lastCheckpoint = CheckpointStore.PathOf(output, iteration);
                log.WriteLine(FormattableString.Invariant($"    checkpoint {iteration}: training held up {checkpoints.LastStall.TotalMilliseconds:F0} ms for the snapshot, written in the background"));
            }
            OnProgress?.Invoke(new RunProgress(iteration, t.Iterations, t.BatchSize, latest));
        }
        if (!diverged && Diverged())
        {
            // Stopped early (cancelled) with the guard tripped since the last read: do not save over good checkpoints.
            diverged = true;
            iteration = counts.StopIteration;
            log.WriteLine($"    diverged at iteration {iteration + 1}: {counts.Consecutive} consecutive updates with non-finite gradients were skipped");
        }
        var skippedUpdates = counts.Skipped;

        if (cancelled && !diverged && iteration > start && lastCheckpoint != CheckpointStore.PathOf(output, iteration))
        {
            log.WriteLine($"    cancelled at iteration {iteration}: saving a checkpoint");
            checkpoints.Enqueue(output, replica, RunArtifacts.StateOf(replica, iteration, session.Cursor), spec.Checkpoint.Keep);
            lastCheckpoint = CheckpointStore.PathOf(output, iteration);
        }
        checkpoints.Flush();   // nothing is lost: the run returns only once its last checkpoint is on disk
        Banner(diverged
            ? $"Stopped, diverged: {iteration - start} iterations in {total.Elapsed.TotalSeconds:F1} s, {skippedUpdates} update(s) skipped"
            : $"Done: {iteration - start} iterations in {total.Elapsed.TotalSeconds:F1} s");
        if (quality is not null) log.WriteLine($"    final samples: {quality}");
        if (lastCheckpoint is not null) log.WriteLine($"    checkpoint: {lastCheckpoint}");
        // The same SHA-256 a cluster's workers log: equal for runs that trained the same model, however interrupted.
        if (!diverged) log.WriteLine($"    final parameter checksum: {replica.Checksum(withBuffers: true)}");
        return new LocalRunResult(iteration, output, lastCheckpoint, lastSamples, quality, cancelled, diverged, skippedUpdates);
    }

    static long Count(nn.Module m) => m.parameters().Sum(p => p.numel());

    void Banner(string text) => log.WriteLine($"==> {text}");
}
