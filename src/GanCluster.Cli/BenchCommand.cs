using System.CommandLine;
using GanCluster.Training.Native;
using GanCluster.Training.Core;
using TorchSharp;

namespace GanCluster.Cli;

/// <summary><c>gancluster bench</c>: DCGAN-64x64x3 training throughput, the model of pytorch_dcgan_ref.py (by default).</summary>
static class BenchCommand
{
    public static Command Build()
    {
        var batches = new Option<string>("--batch") { Description = "Comma-separated batch sizes", DefaultValueFactory = _ => "128,1024" };
        var iters = new Option<int>("--iters") { Description = "Timed iterations per case", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed iterations first", DefaultValueFactory = _ => 5 };
        var variants = new Option<string>("--variants")
        {
            Description = "fp32 or bf16 (training.precision), then any of _bench (cudnn.benchmark on; always on for bf16, as the reference's bf16_cl), "
                          + "_cl (channels_last) and _flat (gradients through the flat host buffers, as in the cluster), in that order: "
                          + "fp32, fp32_bench, fp32_bench_flat, bf16, bf16_cl, bf16_cl_flat, fp32_bench_cl, …",
            DefaultValueFactory = _ => "fp32,fp32_bench,fp32_bench_flat,bf16_cl,bf16_cl_flat",
        };
        var image = new Option<int>("--image") { Description = "Image size (32 or 64)", DefaultValueFactory = _ => 64 };
        var channels = new Option<int>("--channels") { Description = "Image channels: 3 (the reference's model) or 1 (MNIST's, to compare with train --local)", DefaultValueFactory = _ => 3 };
        var ngf = new Option<int>("--ngf") { Description = "ngf = ndf, the model's width (64: the reference's; set it to a run's to compare with train --local)", DefaultValueFactory = _ => 64 };
        var device = Common.Device();
        var libDir = Common.TorchLibDir();
        var cmd = new Command("bench", "Print DCGAN training throughput (img/s) at the given batch sizes") { batches, iters, warmup, variants, image, channels, ngf, device, libDir };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var sizes = ParseList(r.GetValue(batches)!, "--batch");
            var chosen = r.GetValue(variants)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(v => Benchmark.Variant.Parse(v) ?? throw new UsageException(
                    $"--variants: unknown variant {v} (fp32 or bf16, then any of _bench, _cl, _flat in that order)"))
                .ToList();
            var nc = r.GetValue(channels);
            if (nc is not (1 or 3)) throw new UsageException($"--channels: 1 or 3 (got {nc})");
            var width = r.GetValue(ngf);
            if (width is < 1 or > 1024) throw new UsageException($"--ngf: 1 to 1024 (got {width})");
            var (env, dev) = Common.Start(r.GetValue(device)!, r.GetValue(libDir));
            Console.WriteLine($"gancluster bench: DCGAN {r.GetValue(image)}x{r.GetValue(image)}x{nc}, ngf = ndf = {width}, on {dev}, libtorch {env.LibTorchDir}");
            foreach (var b in sizes)
                foreach (var v in chosen)
                {
                    if (TorchRuntime.SetCudnnBenchmark(v.CudnnBenchmark) is null && v.CudnnBenchmark)
                        Console.WriteLine($"note: this libtorch does not export setBenchmarkCuDNN; {v.Name} runs with defaults");
                    var result = Benchmark.Run(dev, b, r.GetValue(iters), r.GetValue(warmup), v.Flat, v.Name, r.GetValue(image), nc, width,
                        v.Precision, v.MemoryFormat);
                    Console.WriteLine(result.ToLine());
                }
            TorchRuntime.SetCudnnBenchmark(false);
            return 0;
        }));
        return cmd;
    }

    static int[] ParseList(string text, string option)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], out result[i]) || result[i] < 1)
                throw new UsageException($"{option}: \"{parts[i]}\" is not a positive integer");
        return result.Length > 0 ? result : throw new UsageException($"{option}: give at least one batch size");
    }
}
