using System.Diagnostics;
using System.Globalization;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Training;

/// <summary>How a local run ended.</summary>
public sealed record LocalRunResult(long Iterations, string Output, string? LastCheckpoint, string? LastSamples, ModeQualityResult? Quality, bool Cancelled,
    bool Diverged = false, long Skipped = 0);

/// <summary>
/// The whole GAN run in one process: one replica, the k-to-1 schedule, metrics, samples and checkpoints.
/// It is the cluster's step with a world of one: compute gradients, then apply them.
/// </summary>
public sealed class LocalTrainer(RunSpec spec, Device device, TextWriter log)
{
    /// <summary>Called after each update, in order (tests check the schedule through it).</summary>
    public Action<StepId>? OnUpdateApplied { get; init; }

    public LocalRunResult Run(CancellationToken cancel = default)
    {
        var t = spec.Training;
        var output = spec.ResolvedOutput;
        Directory.CreateDirectory(output);

        Banner($"Run {spec.Name}: {spec.Model.Kind} on {spec.Dataset.Kind}, k={t.K}, {t.Iterations} iterations, batch {t.BatchSize}, loss {t.Loss}");
        log.WriteLine($"    device {device} | seed {t.Seed} | output {Path.GetFullPath(output)}");
        File.WriteAllText(Path.Combine(output, "spec.json"), spec.ToJson());

        Banner("Loading data");
        var load = Stopwatch.StartNew();
        using var loaded = RunData.Load(spec.Dataset, t.Seed);
        // Small datasets live on the device: one index_select per batch instead of a host copy.
        var data = device.type == DeviceType.CUDA ? loaded.To(device) : loaded;
        log.WriteLine($"    {loaded.Source}: {loaded.Count} samples of [{string.Join(", ", loaded.SampleShape)}] in {load.Elapsed.TotalSeconds:F1} s");
        if (t.BatchSize > loaded.Count)
            throw new InvalidRunSpecException("(run)", [new SpecError("training.batchSize", $"{t.BatchSize} is larger than the dataset ({loaded.Count} samples)")]);

        Banner("Building models");
        using var replica = new GanReplica(spec, device, noiseSeed: t.Seed) { CheckLosses = true };
        log.WriteLine($"    G: {Count(replica.G):N0} parameters, D: {Count(replica.D):N0} parameters, nz {replica.Nz}");

        // A fixed noise batch, drawn from its own generator, shows the same z at every sample point.
        using var fixedNoise = RunArtifacts.FixedNoise(replica, t.Seed);

        var sampler = new ShardSampler(loaded.Count, rank: 0, worldSize: 1, seed: t.Seed);
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
        // NaN guard: an update whose loss is not finite is skipped (not applied); too many in a row end the run.
        int skippedInWindow = 0, consecutiveSkips = 0;
        long skippedUpdates = 0;
        var diverged = false;

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
                    var isD = step.Phase == Phase.Discriminator;
                    if (isD)
                    {
                        // D update: a fresh real minibatch [B, ...] and fresh noise.
                        var real = data.Batch(cursor.Next(t.BatchSize), device);
                        replica.ComputeDiscriminatorGradients(real, last: step.SubStep == t.K - 1);
                    }
                    else
                    {
                        replica.ComputeGeneratorGradients(t.BatchSize);
                    }
                    if (!replica.LastLossFinite)
                    {
                        skippedUpdates++;
                        skippedInWindow++;
                        if (++consecutiveSkips >= t.MaxNonFiniteSkips)
                        {
                            diverged = true;
                            break;
                        }
                        continue;
                    }
                    consecutiveSkips = 0;
                    if (isD) replica.ApplyDiscriminator();
                    else replica.ApplyGenerator();
                    OnUpdateApplied?.Invoke(step);
                }
            }
            if (diverged)
            {
                var st = replica.TakeStats();
                metrics.Append(new MetricsRow(iteration, st.LossD, st.LossG, st.DReal, st.DFake, 0, total.Elapsed.TotalSeconds, skippedInWindow));
                log.WriteLine($"    diverged at iteration {iteration + 1}: {consecutiveSkips} consecutive updates with a non-finite loss were skipped; " +
                              $"stopping with the last good checkpoint ({lastCheckpoint ?? CheckpointStore.List(output).FirstOrDefault() ?? "none"}) intact");
                break;
            }
            iteration++;
            windowIterations++;

            var isLast = iteration == t.Iterations;
            if (iteration % t.LogEvery == 0 || isLast)
            {
                var s = replica.TakeStats();
                var rate = windowIterations * t.BatchSize / Math.Max(window.Elapsed.TotalSeconds, 1e-9);
                var row = new MetricsRow(iteration, s.LossD, s.LossG, s.DReal, s.DFake, rate, total.Elapsed.TotalSeconds, skippedInWindow);
                skippedInWindow = 0;
                log.WriteLine(row.ToConsole(t.Iterations));
                metrics.Append(row);
                window.Restart();
                windowIterations = 0;
            }
            if (iteration % sampleEvery == 0 || isLast)
            {
                var (files, q) = RunArtifacts.WriteSamples(replica, fixedNoise, output, iteration);
                (lastSamples, quality) = (Path.Combine(output, files[0]), q);
                log.WriteLine($"    samples: {lastSamples}{(quality is null ? "" : $" ({quality})")}");
            }
            if (iteration % spec.Checkpoint.Every == 0 || isLast)
            {
                // Training waits for the in-memory snapshot only; the files are written in the background.
                checkpoints.Enqueue(output, replica, RunArtifacts.StateOf(replica, iteration, cursor), spec.Checkpoint.Keep);
                lastCheckpoint = CheckpointStore.PathOf(output, iteration);
                log.WriteLine(FormattableString.Invariant($"    checkpoint {iteration}: training held up {checkpoints.LastStall.TotalMilliseconds:F0} ms for the snapshot, written in the background"));
            }
        }

        if (cancelled && iteration > start && lastCheckpoint != CheckpointStore.PathOf(output, iteration))
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
        return new LocalRunResult(iteration, output, lastCheckpoint, lastSamples, quality, cancelled, diverged, skippedUpdates);
    }

    static long Count(nn.Module m) => m.parameters().Sum(p => p.numel());

    void Banner(string text) => log.WriteLine($"==> {text}");
}
