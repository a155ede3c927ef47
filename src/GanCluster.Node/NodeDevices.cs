using GanCluster.Training.Native;
using TorchSharp;

namespace GanCluster.Node;

/// <summary>Node:Devices → the devices to start one worker each on.</summary>
public static class NodeDevices
{
    public static IReadOnlyList<torch.Device> Resolve(string devices, TorchEnvironment env, Action<string>? warn = null)
    {
        var text = devices.Trim().ToLowerInvariant();
        if (text == "all")
        {
            if (env.CudaAvailable) return Enumerable.Range(0, env.CudaDevices).Select(i => new torch.Device(DeviceType.CUDA, i)).ToList();
            // Said out loud: "all" on a GPU node that lost its CUDA would otherwise join as a slow CPU worker unnoticed.
            warn?.Invoke($"Node:Devices=all: no usable CUDA ({env.CudaProblem}); falling back to one cpu worker");
            return [torch.CPU];
        }
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
