using System.CommandLine;
using TorchSharp;

namespace GanCluster.Cli;

/// <summary><c>gancluster info</c>: where libtorch was loaded from and which devices it sees.</summary>
static class InfoCommand
{
    public static Command Build()
    {
        var libDir = Common.TorchLibDir();
        var cmd = new Command("info", "Load libtorch and print where it came from and which devices it sees") { libDir };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var (env, device) = Common.Start("auto", r.GetValue(libDir));
            Console.WriteLine($"libtorch:     {env.LibTorchDir}");
            Console.WriteLine($"bridge:       {env.BridgePath}{(env.BridgePatched ? " (GLIBCXX_3.4.32 requirement rewritten for this libstdc++)" : "")}");
            Console.WriteLine($"cuda:         {(env.CudaAvailable ? $"{env.CudaDevices} device(s)" : "not available")}");
            Console.WriteLine($"default:      {device}");
            using var t = torch.ones(2, 2, device: device);
            Console.WriteLine($"check:        ones(2,2).sum() = {t.sum().item<float>()} on {device}");
            return 0;
        }));
        return cmd;
    }
}
