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
            // A worker owns one device: "cuda" without its index is not one.
            if (!DeviceName.TryParse(d, out var name) || name is { Cuda: true, Index: null })
                throw new ArgumentException($"Node:Devices entry \"{d}\" must be cpu, cuda:N or all");
            if (!name.Cuda) result.Add(torch.CPU);
            else if (!env.CudaAvailable || name.Index >= env.CudaDevices)
                throw new ArgumentException($"Node:Devices names {d}, but the libtorch in {env.LibTorchDir} sees {env.CudaDevices} CUDA device(s); set TORCH_LIB_DIR to a CUDA PyTorch's torch/lib or use cpu");
            else result.Add(new torch.Device(DeviceType.CUDA, name.Index!.Value));
        }
        return result;
    }
}
