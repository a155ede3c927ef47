using System.CommandLine;
using GanCluster.Training.Native;
using TorchSharp;

namespace GanCluster.Cli;

/// <summary>Options shared by the commands that run torch: device choice and where libtorch comes from.</summary>
static class Common
{
    public static Option<string> Device() => new("--device")
    {
        Description = "auto (CUDA when available), cpu, cuda or cuda:N",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<string?> TorchLibDir() => new("--torch-lib-dir")
    {
        Description = $"A PyTorch install's torch/lib directory to load libtorch (and CUDA) from; default: ${TorchRuntime.LibDirVariable}, else the bundled CPU libtorch",
    };

    /// <summary>Loads libtorch and resolves the device, or explains in one message why it cannot.</summary>
    public static (TorchEnvironment Env, torch.Device Device) Start(string device, string? libDir)
    {
        var env = TorchRuntime.Initialize(libDir);
        return (env, Resolve(device, env));
    }

    public static torch.Device Resolve(string device, TorchEnvironment env)
    {
        var text = device.Trim().ToLowerInvariant();
        if (text == "auto")
        {
            if (env.CudaAvailable) return torch.CUDA;
            // Never silently: someone who pointed at a PyTorch install or has its CUDA library expected a GPU.
            if (env.CudaExpected)
                Console.Error.WriteLine($"gancluster: --device auto: falling back to cpu: {env.CudaProblem}");
            return torch.CPU;
        }
        if (!DeviceName.TryParse(text, out var name)) throw new UsageException($"--device {device}: expected auto, cpu, cuda or cuda:N.");
        if (!name.Cuda) return torch.CPU;
        if (!env.CudaAvailable)
            throw new UsageException($"--device {device}: the libtorch in {env.LibTorchDir} has no usable CUDA. " +
                $"Set {TorchRuntime.LibDirVariable} (or --torch-lib-dir) to a CUDA PyTorch's torch/lib, or use --device cpu.");
        if (name.Index is not { } index) return torch.CUDA;
        if (index < env.CudaDevices) return new torch.Device(DeviceType.CUDA, index);
        throw new UsageException($"--device {device}: this machine has {env.CudaDevices} CUDA device(s) (cuda:0..cuda:{env.CudaDevices - 1}).");
    }

    public static Option<string> CudnnBenchmark() => new("--cudnn-benchmark")
    {
        Description = "on (default) or off: let cuDNN time its convolution algorithms for each new shape (CUDA only)",
        DefaultValueFactory = _ => "on",
    };

    /// <summary>Sets cudnn.benchmark for a CUDA device and says what is in effect; nothing on the CPU.</summary>
    public static void ApplyCudnnBenchmark(string value, torch.Device device)
    {
        var on = value.Trim().ToLowerInvariant() switch
        {
            "on" or "true" => true,
            "off" or "false" => false,
            _ => throw new UsageException($"--cudnn-benchmark: expected on or off (got \"{value}\")"),
        };
        if (device.type != DeviceType.CUDA) return;
        var set = TorchRuntime.SetCudnnBenchmark(on);
        Console.WriteLine(set is null
            ? "    cudnn.benchmark: not available (this libtorch does not export setBenchmarkCuDNN); libtorch's default"
            : $"    cudnn.benchmark: {(set.Value ? "on" : "off")}");
    }

    /// <summary>Runs a command body, turning the errors a user can fix into one message and exit code 2.</summary>
    public static Option<int?> Iterations() => new("--iterations") { Description = "Override training.iterations" };
    public static Option<string?> Output() => new("--output") { Description = "Override the spec's output folder" };

    /// <summary>
    /// <paramref name="spec"/> with <c>--iterations</c> and <c>--output</c> applied, validated again (a value given on the
    /// command line gets the same checks, and the same words, as one in the file).
    /// </summary>
    public static GanCluster.Training.Spec.RunSpec Override(GanCluster.Training.Spec.RunSpec spec, int? iterations, string? output, string source, bool checkPaths)
    {
        if (iterations is null && output is null) return spec;
        if (iterations is { } n) spec = spec with { Training = spec.Training with { Iterations = n } };
        if (output is { } o) spec = spec with { Output = o };
        var errors = GanCluster.Training.Spec.RunSpecValidator.Validate(spec, checkPaths);
        return errors.Count > 0 ? throw new GanCluster.Training.Spec.InvalidRunSpecException(source, errors) : spec;
    }

    public static int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is UsageException or GanCluster.Actors.Security.CredentialsException or TorchLoadException or GanCluster.Training.Spec.InvalidRunSpecException or GanCluster.Training.Data.DatasetException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}

/// <summary>A mistake in how the command was called; printed without a stack trace.</summary>
sealed class UsageException(string message) : Exception(message);
