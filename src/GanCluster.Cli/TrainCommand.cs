using GanCluster.Engine;
using System.CommandLine;
using System.Runtime.InteropServices;
using GanCluster.Training.Native;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;

namespace GanCluster.Cli;

/// <summary><c>gancluster train --local [spec.json]</c>: the whole run in this process.</summary>
static class TrainCommand
{
    public static Command Build()
    {
        var spec = new Argument<string?>("spec") { Description = "Run spec (JSON); omitted: the built-in ring8 default", Arity = ArgumentArity.ZeroOrOne };
        var local = new Option<bool>("--local") { Description = "Train in this process (required: cluster runs are submitted to a cluster)" };
        var device = Common.Device();
        var libDir = Common.TorchLibDir();
        var (iterations, output) = (Common.Iterations(), Common.Output());
        var cudnn = Common.CudnnBenchmark();
        var deterministic = new Option<bool>("--deterministic")
        {
            Description = "Bit-reproducible kernels (cuDNN deterministic, no autotuning, no oneDNN on the CPU): slower, but a run stopped and resumed ends exactly as one that was not",
        };
        var cmd = new Command("train", "Train a GAN from a run spec") { spec, local, device, libDir, iterations, output, cudnn, deterministic };
        cmd.SetAction(r => Common.Guard(() =>
        {
            if (!r.GetValue(local))
                throw new UsageException("train runs in this process only with --local, e.g. gancluster train --local examples/ring8.json");
            var path = r.GetValue(spec);
            var s = path is null ? RunSpec.BuiltInDefault : RunSpecValidator.Load(path);
            s = Common.Override(s, r.GetValue(iterations), r.GetValue(output), path ?? "(built-in default)", checkPaths: true);

            var (_, dev) = Common.Start(r.GetValue(device)!, r.GetValue(libDir));
            Common.ApplyCudnnBenchmark(r.GetValue(cudnn)!, dev);
            if (r.GetValue(deterministic))
                Console.WriteLine(TorchRuntime.SetDeterministic(true)
                    ? "    deterministic: cuDNN deterministic algorithms, no autotuning, oneDNN off"
                    : "    deterministic: not available (this libtorch does not export the switches)");
            // Ctrl+C / SIGTERM: finish the current iteration, save a checkpoint, exit 130.
            using var stop = new CancellationTokenSource();
            var notices = Console.Error;   // under a live progress line, notices go above it
            void OnSignal(PosixSignalContext c)
            {
                c.Cancel = true;
                notices.WriteLine($"gancluster: {c.Signal} received, stopping after the current iteration");
                stop.Cancel();
            }
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
            // On a terminal a live progress line (iteration, img/s, ETA, losses) stays below the run's lines; else plain lines.
            var result = LiveProgress.Run(sinks =>
            {
                if (sinks.Report is not null) notices = sinks.Out;
                return new LocalTrainer(s, dev, sinks.Out) { OnProgress = sinks.Report }.Run(stop.Token);
            });
            return result.Diverged ? 3 : result.Cancelled ? 130 : 0;
        }));
        return cmd;
    }
}
