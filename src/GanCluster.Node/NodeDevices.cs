using GanCluster.Training.Native;
using TorchSharp;

namespace GanCluster.Node;

/// <summary>Node:Devices → the devices to start one worker each on.</summary>
public static class NodeDevices
{
    public static IReadOnlyList<torch.Device> Resolve(string devices, TorchEnvironment env)
    {
        var text = devices.Trim().ToLowerInvariant();
        if (text == "all")
            return env.CudaAvailable ? Enumerable.Range(0, env.CudaDevices).Select(i => new torch.Device(DeviceType.CUDA, i)).ToList() : [torch.CPU];
        var result = new List<torch.Device>();
        foreach (var d in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (d == "cpu") result.Add(torch.CPU);
            else if (d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d[5..], out var i) && i >= 0)
            {
                if (!env.CudaAvailable || i >= env.CudaDevices)
                    throw new ArgumentException($"Node:Devices names {d}, but the libtorch in {env.LibTorchDir} sees {env.CudaDevices} CUDA device(s); set TORCH_LIB_DIR to a CUDA PyTorch's torch/lib or use cpu");
                result.Add(new torch.Device(DeviceType.CUDA, i));
            }
            else throw new ArgumentException($"Node:Devices entry \"{d}\" must be cpu, cuda:N or all");
        }
        return result;
    }
}
