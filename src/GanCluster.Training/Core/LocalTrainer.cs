using System.Diagnostics;
using System.Globalization;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>How a local run ended.</summary>
public sealed record LocalRunResult(long Iterations, string Output, string? LastCheckpoint, string? LastSamples, ModeQualityResult? Quality, bool Cancelled,
    bool Diverged = false, long Skipped = 0);

/// <summary>
/// The whole GAN run in one process: one replica, the k-to-1 schedule, metrics, samples and checkpoints.
/// It is the cluster's step with a world of one: compute gradients, then apply them.
/// </summary>
public sealed class LocalTrainer(RunSpec spec, Device device, TextWriter log)
{
    /// <summary>Called after each update is issued, in order (tests check the schedule through it); skips are counted, not reported here.</summary>
    public Action<StepId>? OnUpdateApplied { get; init; }

    /// <summary>Where the NaN guard decides (null: on a GPU's device, on the CPU's host); tests run the device path on the CPU.</summary>
    public bool? GuardOnDevice { get; init; }

    public LocalRunResult Run(CancellationToken cancel = default)
    {
        var t = spec.Training;
        var output = spec.ResolvedOutput;
        // The folder is this run's, or new: another spec must not resume, prune or trim someone else's run.
        if (RunFolder.OwnershipProblem(output, spec) is { } problem)
            throw new InvalidRunSpecException("(run)", [new SpecError("output", problem)]);
        Directory.CreateDirectory(output);

        Banner($"Run {spec.Name}: {spec.Model.Kind} on {spec.Dataset.Kind}, k={t.K}, {t.Iterations} iterations, batch {t.BatchSize}, loss {t.Loss}");
        log.WriteLine($"    device {device} | seed {t.Seed} | output {Path.GetFullPath(output)}");
        File.WriteAllText(Path.Combine(output, "spec.json"), spec.ToJson());

        Banner("Loading data");
        var load = Stopwatch.StartNew();
        // On a GPU the data goes to the device when it fits (one index_select per batch), else batches are copied through pinned memory.
        using var data = DeviceData.Place(RunData.Load(spec.Dataset, t.Seed), device, spec.Dataset.Placement);
        log.WriteLine($"    {data.Source}: {data.Count} samples of [{string.Join(", ", data.SampleShape)}] in {load.Elapsed.TotalSeconds:F1} s; {data.Description}");
        if (t.BatchSize > data.Count)
            throw new InvalidRunSpecException("(run)", [new SpecError("training.batchSize", $"{t.BatchSize} is larger than the dataset ({data.Count} samples)")]);

        Banner("Building models");
        using var replica = new GanReplica(spec, device, noiseSeed: t.Seed);
        log.WriteLine($"    G: {Count(replica.G):N0} parameters, D: {Count(replica.D):N0} parameters, nz {replica.Nz}");

        // A fixed noise batch, drawn from its own generator, shows the same z at every sample point.
        using var fixedNoise = RunArtifacts.FixedNoise(replica, t.Seed);

        var sampler = new ShardSampler(data.Count, rank: 0, worldSize: 1, seed: t.Seed);
        var cursor = new BatchCursor(sampler);
        long start = 0;
        var resumeFrom = CheckpointStore.LatestValid(output, out var skipped);
        foreach (var s in skipped) log.WriteLine($"    warning: skipping checkpoint {s}");
        if (resumeFrom is not null)
        {
            var state = CheckpointStore.ReadState(resumeFrom);
            CheckpointStore.Restore(resumeFrom, replica, state);
            cursor = new BatchCursor(sampler, state.DataEpoch, state.DataOffset);
            start = state.Iteration;
            MetricsCsv.Trim(Path.Combine(output, "metrics.csv"), start);
            log.WriteLine($"    resuming from {resumeFrom} (iteration {start})");
        }

        Banner("Training");
        using var metrics = new MetricsCsv(Path.Combine(output, "metrics.csv"));
        var sampleEvery = t.SampleEvery > 0 ? t.SampleEvery : spec.Checkpoint.Every;
        var total = Stopwatch.StartNew();
        var window = Stopwatch.StartNew();
        long windowIterations = 0;
        string? lastCheckpoint = null, lastSamples = null;
        ModeQualityResult? quality = null;
        var iteration = start;
        var cancelled = false;
        var checkpoints = new CheckpointWriter();
        // NaN guard, on the device: an update whose loss is not finite is skipped (not applied); after too many in a row
        // every later one is skipped too, and the run stops at the next read of the counts (log lines and saves).
        using var guard = new NonFiniteGuard(t.MaxNonFiniteSkips, device, GuardOnDevice);
        long skippedReported = 0;
        GuardCounts counts = default;
        var diverged = false;

        // Reads the guard's counts (one device sync); true when the run has diverged and must stop before logging or saving.
        bool Diverged()
        {
            counts = guard.Read();
            return counts.Stopped;
        }

        while (iteration < t.Iterations)
        {
            if (cancel.IsCancellationRequested)
            {
                cancelled = true;
                break;
            }
            using (var scope = NewDisposeScope())
            {
                replica.SetIteration(iteration);
                foreach (var step in GanSchedule.Iteration(iteration, t.K))
                {
                    if (step.Phase == Phase.Discriminator)
                    {
                        // D update: a fresh real minibatch [B, ...] and fresh noise.
                        var real = data.Batch(cursor, t.BatchSize);
                        replica.ComputeDiscriminatorGradients(real, last: step.SubStep == t.K - 1);
                        var d = guard.Decide(replica.LastLoss, iteration);
                        if (!d.Skip) replica.ApplyDiscriminator(d.Mask);
                    }
                    else
                    {
                        replica.ComputeGeneratorGradients(t.BatchSize);
                        var d = guard.Decide(replica.LastLoss, iteration);
                        if (!d.Skip) replica.ApplyGenerator(d.Mask);
                    }
                    OnUpdateApplied?.Invoke(step);
                }
            }
            iteration++;
            windowIterations++;

            var isLast = iteration == t.Iterations;
            var logNow = iteration % t.LogEvery == 0 || isLast;
            var sampleNow = iteration % sampleEvery == 0 || isLast;
            var checkpointNow = iteration % spec.Checkpoint.Every == 0 || isLast;
            if ((logNow || sampleNow || checkpointNow) && Diverged())
            {
                diverged = true;
                var st = replica.TakeStats();
                metrics.Append(new MetricsRow(iteration, st.LossD, st.LossG, st.DReal, st.DFake, 0, total.Elapsed.TotalSeconds, (int)(counts.Skipped - skippedReported)));
                iteration = counts.StopIteration;
                log.WriteLine($"    diverged at iteration {iteration + 1}: {counts.Consecutive} consecutive updates with a non-finite loss were skipped; " +
                              $"stopping with the last good checkpoint ({lastCheckpoint ?? CheckpointStore.List(output).FirstOrDefault() ?? "none"}) intact");
                break;
            }
            if (logNow)
            {
                var s = replica.TakeStats();
                var rate = windowIterations * t.BatchSize / Math.Max(window.Elapsed.TotalSeconds, 1e-9);
                var row = new MetricsRow(iteration, s.LossD, s.LossG, s.DReal, s.DFake, rate, total.Elapsed.TotalSeconds, (int)(counts.Skipped - skippedReported));
                skippedReported = counts.Skipped;
                log.WriteLine(row.ToConsole(t.Iterations));
                metrics.Append(row);
                window.Restart();
                windowIterations = 0;
            }
            if (sampleNow)
            {
                var (files, q) = RunArtifacts.WriteSamples(replica, fixedNoise, output, iteration);
                (lastSamples, quality) = (Path.Combine(output, files[0]), q);
                log.WriteLine($"    samples: {lastSamples}{(quality is null ? "" : $" ({quality})")}");
            }
            if (checkpointNow)
            {
                // Training waits for the in-memory snapshot only; the files are written in the background.
                checkpoints.Enqueue(output, replica, RunArtifacts.StateOf(replica, iteration, cursor), spec.Checkpoint.Keep);
                lastCheckpoint = CheckpointStore.PathOf(output, iteration);
                log.WriteLine(FormattableString.Invariant($"    checkpoint {iteration}: training held up {checkpoints.LastStall.TotalMilliseconds:F0} ms for the snapshot, written in the background"));
            }
        }
        if (!diverged && Diverged())
        {
            // Stopped early (cancelled) with the guard tripped since the last read: do not save over good checkpoints.
            diverged = true;
            iteration = counts.StopIteration;
            log.WriteLine($"    diverged at iteration {iteration + 1}: {counts.Consecutive} consecutive updates with a non-finite loss were skipped");
        }
        var skippedUpdates = counts.Skipped;

        if (cancelled && !diverged && iteration > start && lastCheckpoint != CheckpointStore.PathOf(output, iteration))
        {
            log.WriteLine($"    cancelled at iteration {iteration}: saving a checkpoint");
            checkpoints.Enqueue(output, replica, RunArtifacts.StateOf(replica, iteration, cursor), spec.Checkpoint.Keep);
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
