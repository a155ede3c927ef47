using System.CommandLine;
using GanCluster.Training.Native;
using GanCluster.Training.Core;
using TorchSharp;

namespace GanCluster.Cli;

/// <summary><c>gancluster info</c>: where libtorch was loaded from and which devices it sees.</summary>
static class InfoCommand
{
    public static Command Build()
    {
        var libDir = Common.TorchLibDir();
        var selfTest = new Option<bool>("--self-test") { Description = "Also train a tiny DCGAN for a few steps and round-trip a checkpoint on --device (exit 1 on any failure)" };
        var deviceOption = Common.Device();
        var cmd = new Command("info", "Load libtorch and print where it came from and which devices it sees") { libDir, selfTest, deviceOption };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var (env, device) = Common.Start(r.GetValue(deviceOption)!, r.GetValue(libDir));
            Console.WriteLine($"libtorch:     {env.LibTorchDir}");
            Console.WriteLine($"bridge:       {env.BridgePath}{(env.BridgePatched ? " (GLIBCXX_3.4.32 requirement rewritten for this libstdc++)" : "")}");
            Console.WriteLine($"cuda:         {(env.CudaAvailable ? $"{env.CudaDevices} device(s)" : $"not available ({env.CudaProblem})")}");
            Console.WriteLine($"cudnn.benchmark: {(TorchRuntime.CudnnBenchmarkSettable ? "settable (libtorch exports at::Context::setBenchmarkCuDNN)" : "not settable (symbol not exported by this libtorch)")}");
            if (env.CudaAvailable && TorchRuntime.CudaMemoryInfo(0) is { } mem)
                Console.WriteLine($"cuda:0 memory: {mem.Free / 1e9:F1} GB free of {mem.Total / 1e9:F1} GB");
            Console.WriteLine($"device:       {device}");
            using var t = torch.ones(2, 2, device: device);
            Console.WriteLine($"check:        ones(2,2).sum() = {t.sum().item<float>()} on {device}");
            if (!r.GetValue(selfTest)) return 0;
            return SelfTest.Run(device, Console.Out) ? 0 : 1;
        }));
        return cmd;
    }
}
