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
            Description = "fp32 (libtorch defaults), fp32_bench (cudnn.benchmark on), fp32_flat and fp32_bench_flat (plus gradients through the flat host buffers, as in the cluster)",
            DefaultValueFactory = _ => "fp32,fp32_bench,fp32_bench_flat",
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
            var chosen = r.GetValue(variants)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var v in chosen)
                if (v is not ("fp32" or "fp32_bench" or "fp32_flat" or "fp32_bench_flat"))
                    throw new UsageException($"--variants: unknown variant {v}");
            var nc = r.GetValue(channels);
            if (nc is not (1 or 3)) throw new UsageException($"--channels: 1 or 3 (got {nc})");
            var width = r.GetValue(ngf);
            if (width is < 1 or > 1024) throw new UsageException($"--ngf: 1 to 1024 (got {width})");
            var (env, dev) = Common.Start(r.GetValue(device)!, r.GetValue(libDir));
            Console.WriteLine($"gancluster bench: DCGAN {r.GetValue(image)}x{r.GetValue(image)}x{nc}, ngf = ndf = {width}, on {dev}, libtorch {env.LibTorchDir}");
            foreach (var b in sizes)
                foreach (var v in chosen)
                {
                    var bench = v.Contains("bench", StringComparison.Ordinal);
                    if (TorchRuntime.SetCudnnBenchmark(bench) is null && bench)
                        Console.WriteLine("note: this libtorch does not export setBenchmarkCuDNN; fp32_bench runs with defaults");
                    var result = Benchmark.Run(dev, b, r.GetValue(iters), r.GetValue(warmup), v.EndsWith("_flat", StringComparison.Ordinal), v, r.GetValue(image), nc, width);
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
