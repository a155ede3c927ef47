using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class LocalRunTests
{
    public LocalRunTests() => TorchSetup.Ensure();

    [Fact]
    public void A_bf16_run_says_so_and_resumes_in_fp32_from_its_checkpoint()
    {
        using var dir = new TempFolder();
        var fp32 = TinySpecs.Ring8(dir.Path, iterations: 20) with { Checkpoint = new CheckpointSpec { Every = 10, Keep = 2 } };
        var bf16 = fp32 with { Training = fp32.Training with { Precision = "bf16", Iterations = 10 } };
        var log = new StringWriter();
        new LocalTrainer(bf16, CPU, log).Run();
        Assert.Contains("compute bf16, contiguous", log.ToString());

        // The checkpoint holds fp32 masters: the same run goes on in fp32 from it.
        log = new StringWriter();
        var result = new LocalTrainer(fp32, CPU, log).Run();
        Assert.Equal(20, result.Iterations);
        Assert.Contains("resuming from", log.ToString());
        Assert.Contains("(iteration 10)", log.ToString());
        Assert.DoesNotContain("compute bf16", log.ToString());
        Assert.Equal("fp32", CheckpointStore.ReadState(CheckpointStore.List(dir.Path)[0]).Spec.Training.Precision);
    }

    [Fact]
    public void A_run_writes_metrics_samples_and_checkpoints()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 20) with { Checkpoint = new CheckpointSpec { Every = 5, Keep = 2 } };
        var log = new StringWriter();
        var result = new LocalTrainer(spec, CPU, log).Run();

        Assert.Equal(20, result.Iterations);
        var rows = File.ReadAllLines(Path.Combine(dir.Path, "metrics.csv"));
        Assert.Equal(MetricsRow.Header, rows[0]);
        // Interval rows (loss_d filled); ring8's sample saves add quality rows (modes, high_quality) in between.
        Assert.Equal(new[] { "10", "20" }, rows.Skip(1).Where(r => r.Split(',')[1].Length > 0).Select(r => r.Split(',')[0]));
        Assert.All(rows.Skip(1), r => Assert.Equal(13, r.Split(',').Length));
        Assert.Equal(new long[] { 5, 10, 15, 20 }, MetricsCsv.Read(Path.Combine(dir.Path, "metrics.csv")).Where(r => r.IsQuality).Select(r => r.Iteration));
        Assert.Contains("[10/20] Loss_D:", log.ToString());
        Assert.Contains("seed 11", log.ToString());

        // keep = 2: only the two newest of 5, 10, 15, 20 remain, and both verify.
        var checkpoints = CheckpointStore.List(dir.Path);
        Assert.Equal(new[] { "iter-00000020", "iter-00000015" }, checkpoints.Select(Path.GetFileName));
        Assert.All(checkpoints, c => Assert.Null(CheckpointStore.Verify(c)));
        var state = CheckpointStore.ReadState(checkpoints[0]);
        Assert.Equal(20, state.Iteration);
        Assert.Equal(spec, state.Spec);
        Assert.True(File.Exists(Path.Combine(dir.Path, "samples", "iter-00000020.png")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "samples", "iter-00000020.csv")));
    }

    [Fact]
    public void A_corrupted_checkpoint_is_skipped_for_the_previous_one()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 10);
        new LocalTrainer(spec, CPU, TextWriter.Null).Run();
        var newest = CheckpointStore.List(dir.Path)[0];
        var g = Path.Combine(newest, "G.bin");
        var bytes = File.ReadAllBytes(g);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(g, bytes);

        Assert.Equal("G.bin fails its checksum", CheckpointStore.Verify(newest));
        var valid = CheckpointStore.LatestValid(dir.Path, out var skipped);
        Assert.Equal(CheckpointStore.List(dir.Path)[1], valid);
        Assert.Contains(newest, Assert.Single(skipped));
    }

    [Fact]
    public void Stopping_and_resuming_gives_the_parameters_of_an_uninterrupted_run()
    {
        using var straight = new TempFolder();
        using var split = new TempFolder();
        var full = TinySpecs.Ring8(straight.Path, iterations: 12) with { Checkpoint = new CheckpointSpec { Every = 6, Keep = 3 } };
        new LocalTrainer(full, CPU, TextWriter.Null).Run();

        var first = full with { Output = split.Path, Training = full.Training with { Iterations = 6 } };
        new LocalTrainer(first, CPU, TextWriter.Null).Run();
        var log = new StringWriter();
        new LocalTrainer(full with { Output = split.Path }, CPU, log).Run();
        Assert.Contains("resuming from", log.ToString());

        Assert.Equal(ReadWeights(straight.Path), ReadWeights(split.Path));
        Assert.Equal(new[] { "6", "12" }, File.ReadAllLines(Path.Combine(split.Path, "metrics.csv")).Skip(1).Where(r => r.Split(',')[1].Length > 0).Select(r => r.Split(',')[0]));
    }

    static float[] ReadWeights(string output)
    {
        var dir = CheckpointStore.List(output)[0];
        var state = CheckpointStore.ReadState(dir);
        using var replica = new GanReplica(state.Spec, CPU, 0);
        CheckpointStore.Restore(dir, replica, state);
        return replica.G.parameters().Concat(replica.D.parameters()).SelectMany(p => p.data<float>().ToArray()).ToArray();
    }

    [Fact]
    public void A_dcgan_run_on_idx_images_writes_an_image_grid()
    {
        using var dir = new TempFolder();
        var idx = Path.Combine(dir.Path, "train-images-idx3-ubyte");
        Fixtures.WriteIdx(idx, count: 40, size: 28);
        var spec = new RunSpec
        {
            Name = "tiny-mnist",
            Dataset = new DatasetSpec { Kind = "mnist", Path = idx, ImageSize = 28 },
            Model = new ModelSpec { Kind = "dcgan", Nz = 8, Ngf = 4, Ndf = 4 },
            Training = new TrainingSpec { Iterations = 3, BatchSize = 8, LogEvery = 1 },
            Checkpoint = new CheckpointSpec { Every = 3, Keep = 1 },
            Output = Path.Combine(dir.Path, "out"),
        };
        Assert.Empty(RunSpecValidator.Validate(spec));
        var result = new LocalTrainer(spec, CPU, TextWriter.Null).Run();
        using var png = SkiaSharp.SKBitmap.Decode(result.LastSamples!);
        Assert.Equal(8 * 30, png.Width);   // 8 columns of 28 px + 2 px padding
        Assert.Equal(8 * 30, png.Height);  // 64 fixed-noise samples
    }

    [Fact]
    public void Benchmark_runs_the_reference_model_and_reports_throughput()
    {
        var r = Benchmark.Run(CPU, batch: 2, iterations: 1, warmup: 1, flat: true, variant: "fp32_flat", imageSize: 32);
        Assert.Equal(2, r.Batch);
        Assert.True(r.StepMs > 0 && r.ImagesPerSecond > 0);
        Assert.True(r.GradToHostMs >= 0);
        Assert.StartsWith("RESULT gancluster fp32_flat B=2 step_ms=", r.ToLine());
    }
}

static class Fixtures
{
    /// <summary>An IDX image file (magic 0x00000803) with a simple pattern per image.</summary>
    public static void WriteIdx(string path, int count, int size)
    {
        using var w = new BinaryWriter(File.Create(path));
        foreach (var v in new[] { 0x00000803, count, size, size }) w.Write(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v));
        for (var i = 0; i < count; i++)
            for (var p = 0; p < size * size; p++)
                w.Write((byte)((p % size + i * 7) % 256));
    }
}

public class NanGuardTests
{
    public NanGuardTests() => TorchSetup.Ensure();

    [Theory]
    [InlineData(false)]   // decided on the host, as CPU runs do
    [InlineData(true)]    // decided on the device without a sync, as GPU runs do
    public void Non_finite_gradients_skip_updates_and_too_many_in_a_row_end_the_run_with_the_last_good_checkpoint_intact(bool onDevice)
    {
        using var dir = new TempFolder();
        // SGD with lr 1e30 on D: the first update blows D's weights up, every later loss is inf or NaN.
        var tiny = TinySpecs.Ring8(dir.Path, iterations: 50);
        var spec = tiny with
        {
            Training = tiny.Training with { OptimizerD = "sgd", LrD = 1e30, MaxNonFiniteSkips = 5, LogEvery = 1 },
            Checkpoint = new CheckpointSpec { Every = 1, Keep = 3 },
        };
        var log = new StringWriter();
        var result = new LocalTrainer(spec, CPU, log) { GuardOnDevice = onDevice }.Run();

        Assert.True(result.Diverged, log.ToString());
        Assert.Equal(5, result.Skipped);
        Assert.True(result.Iterations < 50);
        Assert.Contains("diverged at iteration", log.ToString());
        Assert.Contains("5 consecutive updates with non-finite gradients were skipped", log.ToString());

        // Metrics count the skips; every kept checkpoint still verifies and none is newer than the last good iteration.
        var rows = File.ReadAllLines(Path.Combine(dir.Path, "metrics.csv")).Skip(1).Select(r => r.Split(',')).ToList();
        Assert.Equal(5, rows.Where(r => r[7].Length > 0).Sum(r => int.Parse(r[7])));   // quality rows leave skipped empty
        var newest = CheckpointStore.List(dir.Path)[0];
        Assert.Null(CheckpointStore.Verify(newest));
        Assert.Equal(result.Iterations, CheckpointStore.ReadState(newest).Iteration);
        using var weights = new GanReplica(spec, CPU, 0);
        CheckpointStore.Restore(newest, weights, CheckpointStore.ReadState(newest));
        Assert.All(weights.G.parameters(), p => Assert.True(p.isfinite().all().item<bool>()));
    }
}

public class CheckpointWriterTests
{
    public CheckpointWriterTests() => TorchSetup.Ensure();

    [Fact]
    public void Snapshots_are_written_in_the_background_and_later_changes_do_not_leak_into_them()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, 1);
        using var replica = new GanReplica(spec, CPU, 0);
        var cursor = new GanCluster.Training.Data.BatchCursor(new GanCluster.Training.Data.ShardSampler(100, 0, 1, 1));
        var writer = new CheckpointWriter();

        var before = replica.G.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
        writer.Enqueue(dir.Path, replica, RunArtifacts.StateOf(replica, 1, cursor), keep: 2);
        using (no_grad()) foreach (var p in replica.G.parameters()) p.add_(1);   // training goes on at once
        writer.Enqueue(dir.Path, replica, RunArtifacts.StateOf(replica, 2, cursor), keep: 2);
        Assert.Equal(CheckpointStore.PathOf(dir.Path, 2), writer.Flush());

        Assert.All(CheckpointStore.List(dir.Path), c => Assert.Null(CheckpointStore.Verify(c)));
        using var restored = new GanReplica(spec, CPU, 0);
        CheckpointStore.Restore(CheckpointStore.PathOf(dir.Path, 1), restored, CheckpointStore.ReadState(CheckpointStore.PathOf(dir.Path, 1)));
        Assert.Equal(before, restored.G.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray());
    }

    [Fact]
    public void A_failed_background_write_surfaces_at_flush()
    {
        using var dir = new TempFolder();
        var notAFolder = Path.Combine(dir.Path, "file");
        File.WriteAllText(notAFolder, "x");
        using var replica = new GanReplica(TinySpecs.Ring8(dir.Path, 1), CPU, 0);
        var cursor = new GanCluster.Training.Data.BatchCursor(new GanCluster.Training.Data.ShardSampler(100, 0, 1, 1));
        var writer = new CheckpointWriter();
        writer.Enqueue(notAFolder, replica, RunArtifacts.StateOf(replica, 1, cursor), keep: 1);
        Assert.ThrowsAny<IOException>(() => writer.Flush());
    }
}
