using System.Diagnostics;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>One measured case, printed in the same shape as pytorch_dcgan_ref.py's RESULT lines.</summary>
public sealed record BenchResult(string Variant, int Batch, double StepMs, double ImagesPerSecond, double GradToHostMs, double GradFromHostMs)
{
    public string ToLine()
    {
        var line = FormattableString.Invariant($"RESULT gancluster {Variant} B={Batch} step_ms={StepMs:F2} img_per_s={ImagesPerSecond:F0}");
        return double.IsNaN(GradToHostMs)
            ? line
            : line + FormattableString.Invariant($" grad_to_host_ms={GradToHostMs:F2} grad_from_host_ms={GradFromHostMs:F2}");
    }
}

/// <summary>
/// Training throughput of DCGAN-64x64x3 (nz 100, ngf = ndf = 64, Adam 2e-4 / 0.5 / 0.999, k = 1), the model of
/// ../shared/gpu/pytorch_dcgan_ref.py: one iteration = one D update on a real and a fake batch, then one G update.
/// </summary>
public static class Benchmark
{
    public static RunSpec DcganSpec(int imageSize = 64, int channels = 3, int width = 64, string precision = "fp32", string memoryFormat = "contiguous") => new()
    {
        Name = "bench",
        Dataset = new DatasetSpec { Kind = "folder", ImageSize = imageSize, Channels = channels },
        Model = new ModelSpec { Kind = "dcgan", Nz = 100, Ngf = width, Ndf = width },
        Training = new TrainingSpec
        {
            K = 1, BatchSize = 128, LrD = 2e-4, LrG = 2e-4, Beta1 = 0.5, Beta2 = 0.999, Precision = precision, MemoryFormat = memoryFormat,
        },
    };

    /// <summary>A bench variant's parts: <c>fp32|bf16</c>, then any of <c>_bench</c> (cudnn.benchmark), <c>_cl</c> (channels_last), <c>_flat</c>.</summary>
    public sealed record Variant(string Name, string Precision, bool CudnnBenchmark, bool ChannelsLast, bool Flat)
    {
        public string MemoryFormat => ChannelsLast ? "channels_last" : "contiguous";

        /// <summary>
        /// Null when <paramref name="name"/> is not a variant. bf16 variants always run with cudnn.benchmark on, as the
        /// reference's bf16_cl does (autocast's users run it so); fp32 ones only with <c>_bench</c>.
        /// </summary>
        public static Variant? Parse(string name)
        {
            var parts = name.Split('_');
            if (parts[0] is not ("fp32" or "bf16")) return null;
            var rest = parts.Skip(1).ToList();
            // One spelling per variant: known parts, each at most once, in this order.
            if (!rest.SequenceEqual(new[] { "bench", "cl", "flat" }.Where(rest.Contains))) return null;
            return new Variant(name, parts[0], parts[0] == "bf16" || rest.Contains("bench"), rest.Contains("cl"), rest.Contains("flat"));
        }
    }

    /// <summary>
    /// Runs <paramref name="warmup"/> then <paramref name="iterations"/> timed iterations. <paramref name="flat"/> adds
    /// the cluster path: both networks' gradients to their flat host buffers and back every update.
    /// </summary>
    /// <param name="width">ngf = ndf (64 in the reference; smaller to compare with a run of a smaller model).</param>
    public static BenchResult Run(Device device, int batch, int iterations, int warmup, bool flat, string variant, int imageSize = 64, int channels = 3,
        int width = 64, string precision = "fp32", string memoryFormat = "contiguous")
    {
        var spec = DcganSpec(imageSize, channels, width, precision, memoryFormat);
        using var replica = new GanReplica(spec, device, noiseSeed: 0);
        // The "real" batch from a seeded CPU generator, as every seeded draw here: the same numbers on every device.
        using var gen = new Generator(0);
        using Scalar two = 2;   // held (see Scalars)
        using var real = GanReplica.DrawUniform([batch, channels, imageSize, imageSize], gen, device).mul_(two).sub_(Scalars.One).DetachFromDisposeScope();
        double toHost = 0, fromHost = 0;
        var clock = new Stopwatch();

        void Step(bool timed)
        {
            using var scope = NewDisposeScope();
            replica.ComputeDiscriminatorGradients(real, last: true);
            if (flat) Move(replica.DGrads, timed);
            replica.ApplyDiscriminator();
            replica.ComputeGeneratorGradients(batch);
            if (flat) Move(replica.GGrads, timed);
            replica.ApplyGenerator();
        }

        void Move(FlatBuffer buffer, bool timed)
        {
            if (timed)
            {
                Sync(device);
                clock.Restart();
            }
            buffer.GatherGrads();                // ends with a synchronous device-to-host copy
            if (timed)
            {
                toHost += clock.Elapsed.TotalMilliseconds;
                clock.Restart();
            }
            buffer.ScatterGrads();
            if (timed)
            {
                Sync(device);
                fromHost += clock.Elapsed.TotalMilliseconds;
            }
        }

        for (var i = 0; i < warmup; i++) Step(false);
        Sync(device);
        replica.TakeStats();
        var total = Stopwatch.StartNew();
        for (var i = 0; i < iterations; i++) Step(flat);
        Sync(device);
        var stepMs = total.Elapsed.TotalMilliseconds / iterations;
        replica.TakeStats();
        return new BenchResult(variant, batch, stepMs, batch / stepMs * 1000,
            flat ? toHost / iterations : double.NaN, flat ? fromHost / iterations : double.NaN);
    }

    static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }
}
