using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using TorchSharp;

namespace GanCluster.Training.Native;

/// <summary>Where libtorch came from and what it can run on.</summary>
/// <param name="CudaProblem">Why CUDA is not usable (null when it is).</param>
/// <param name="CudaExpected">CUDA was likely wanted: TORCH_LIB_DIR named a PyTorch install, or its CUDA library is there but failed.</param>
public sealed record TorchEnvironment(string LibTorchDir, string BridgePath, bool BridgePatched, bool CudaAvailable, int CudaDevices,
    string? CudaProblem = null, bool CudaExpected = false);

/// <summary>Raised when libtorch cannot be loaded; the message lists what was tried and what to do.</summary>
public sealed class TorchLoadException(string message) : Exception(message);

/// <summary>
/// Loads libtorch and TorchSharp's native bridge (libLibTorchSharp.so) before TorchSharp touches them.
/// <list type="bullet">
/// <item>TORCH_LIB_DIR (or <see cref="Initialize"/>'s argument) names a PyTorch install's torch/lib; CUDA is
/// used when that libtorch has it. Otherwise the libtorch restored next to the app is used.</item>
/// <item>If the bridge needs a newer libstdc++ than the system has (Debian 12: GLIBCXX_3.4.32), a copy with
/// that one version requirement rewritten to GLIBCXX_3.4.30 is cached and loaded instead.</item>
/// </list>
/// </summary>
public static class TorchRuntime
{
    public const string LibDirVariable = "TORCH_LIB_DIR";
    public const string CacheDirVariable = "GANCLUSTER_NATIVE_CACHE";
    const string BridgeFile = "libLibTorchSharp.so";
    const string NeededVersion = "GLIBCXX_3.4.32", FallbackVersion = "GLIBCXX_3.4.30";

    static readonly Lock Gate = new();
    static TorchEnvironment? _loaded;
    static readonly Dictionary<string, IntPtr> Handles = new(StringComparer.Ordinal);

    /// <summary>Loads libtorch once per process; later calls return the first result.</summary>
    public static TorchEnvironment Initialize(string? libTorchDir = null)
    {
        lock (Gate)
        {
            if (_loaded is not null) return _loaded;
            if (!OperatingSystem.IsLinux())
            {
                // Other platforms: TorchSharp's own loader (no patching needed there).
                torch.InitializeDeviceType(DeviceType.CPU);
                var cuda = torch.cuda.is_available();
                return _loaded = new TorchEnvironment("(TorchSharp default)", "(TorchSharp default)", false, cuda, cuda ? torch.cuda.device_count() : 0);
            }
            _loaded = LoadLinux(libTorchDir ?? NullIfEmpty(Environment.GetEnvironmentVariable(LibDirVariable)));
            return _loaded;
        }
    }

    static string? NullIfEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    static TorchEnvironment LoadLinux(string? explicitDir)
    {
        var trace = new StringBuilder();
        var appDirs = new[] { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") };

        // 1. libtorch itself: a PyTorch install when asked for, else the NuGet copy next to the app.
        string libDir;
        if (explicitDir is not null)
        {
            libDir = Path.GetFullPath(explicitDir);
            trace.AppendLine($"  {LibDirVariable}={explicitDir}");
            if (!File.Exists(Path.Combine(libDir, "libtorch.so")))
                throw Fail(trace.AppendLine($"  no libtorch.so in {libDir}"), explicitDir);
        }
        else
        {
            libDir = appDirs.FirstOrDefault(d => File.Exists(Path.Combine(d, "libtorch.so")))
                ?? throw Fail(trace.AppendLine($"  no libtorch.so in {string.Join(" or ", appDirs)} and {LibDirVariable} is not set"), null);
        }

        // libtorch_cuda first when present: libtorch.so of a CUDA build needs it anyway.
        foreach (var (key, file) in new[] { ("torch_cuda", "libtorch_cuda.so"), ("torch_cpu", "libtorch_cpu.so"), ("torch", "libtorch.so") })
        {
            var path = Path.Combine(libDir, file);
            if (!File.Exists(path)) continue;
            if (!TryLoad(path, trace, out var h)) throw Fail(trace, explicitDir);
            Handles[key] = h;
        }

        // 2. The bridge: next to the app (TorchSharp package), patched if this libstdc++ is too old for it.
        var bridge = appDirs.Select(d => Path.Combine(d, BridgeFile)).FirstOrDefault(File.Exists)
            ?? throw Fail(trace.AppendLine($"  no {BridgeFile} in {string.Join(" or ", appDirs)} (is the TorchSharp package restored?)"), explicitDir);
        var patched = false;
        if (!TryLoad(bridge, trace, out var bridgeHandle))
        {
            var copy = PatchedCopy(bridge, trace);
            if (copy is null || !TryLoad(copy, trace, out bridgeHandle)) throw Fail(trace, explicitDir);
            bridge = copy;
            patched = true;
        }
        Handles["LibTorchSharp"] = bridgeHandle;

        // 3. From here on TorchSharp's DllImports resolve to what was loaded above.
        NativeLibrary.SetDllImportResolver(typeof(torch).Assembly, Resolve);
        torch.InitializeDeviceType(DeviceType.CPU);
        var hasCudaLib = Handles.ContainsKey("torch_cuda");
        var cudaAvailable = hasCudaLib && torch.TryInitializeDeviceType(DeviceType.CUDA);
        var problem = cudaAvailable ? null
            : hasCudaLib ? $"{Path.Combine(libDir, "libtorch_cuda.so")} loaded, but CUDA did not initialise (no driver or no visible GPU?)"
            : $"the libtorch in {libDir} is a CPU build (no libtorch_cuda.so)";
        return new TorchEnvironment(libDir, bridge, patched, cudaAvailable, cudaAvailable ? torch.cuda.device_count() : 0,
            problem, CudaExpected: !cudaAvailable && (explicitDir is not null || hasCudaLib));
    }

    // at::Context switches that TorchSharp 0.107 does not expose, by their exported (mangled) names in libtorch_cpu.
    const string GlobalContext = "_ZN2at13globalContextEv", SetBenchmark = "_ZN2at7Context17setBenchmarkCuDNNEb",
        GetBenchmark = "_ZNK2at7Context14benchmarkCuDNNEv", SetDeterministicCudnn = "_ZN2at7Context21setDeterministicCuDNNEb",
        SetMkldnn = "_ZN2at7Context20setUserEnabledMkldnnEb", SetNnpack = "_ZN2at7Context20setUserEnabledNNPACKEb";

    /// <summary>libtorch's global context and the exports named, or null when this libtorch lacks any of them. Call under <see cref="Gate"/>.</summary>
    static unsafe (IntPtr Context, IntPtr[] Exports)? Context(params string[] symbols)
    {
        if (!Handles.TryGetValue("torch_cpu", out var lib) || !NativeLibrary.TryGetExport(lib, GlobalContext, out var globalContext)) return null;
        var exports = new IntPtr[symbols.Length];
        for (var i = 0; i < symbols.Length; i++)
            if (!NativeLibrary.TryGetExport(lib, symbols[i], out exports[i])) return null;
        return (((delegate* unmanaged<IntPtr>)globalContext)(), exports);
    }

    static unsafe void SetFlag(IntPtr context, IntPtr setter, bool value) =>
        ((delegate* unmanaged<IntPtr, byte, void>)setter)(context, value ? (byte)1 : (byte)0);

    /// <summary>
    /// Makes CPU convolutions run libtorch's own kernels for the rest of the process: oneDNN (mkldnn) off
    /// (at::globalContext().setUserEnabledMkldnn(false)), and NNPACK off too where libtorch exports the switch. On this
    /// workplace's AMD EPYC (Zen 4, avx512_bf16) libtorch 2.10's oneDNN computed wrong numbers: DCGAN-32 and -64
    /// discriminator gradients in fp32 17–24 % away from an fp64 computation, or NaN (libtorch's own kernels:
    /// 2–6·10⁻⁷), and bf16 convolutions off by half their output, different on every call (DEVELOPERS.md). NNPACK cannot
    /// initialise on such CPUs, and without oneDNN libtorch would try it, and warn, on every convolution. Once per
    /// process rather than around each use: a switch that other threads could see flip mid-computation would make two
    /// replicas' arithmetic differ. Returns false when this libtorch does not export the oneDNN switch.
    /// </summary>
    public static bool UseNativeCpuConvolutions()
    {
        lock (Gate)
        {
            if (_mkldnnOff) return true;
            if (Context(SetMkldnn) is not { } c) return false;
            SetFlag(c.Context, c.Exports[0], false);
            if (Context(SetNnpack) is { } n) SetFlag(n.Context, n.Exports[0], false);
            return _mkldnnOff = true;
        }
    }

    static bool _mkldnnOff;

    /// <summary>
    /// cudnn.benchmark (autotuned convolution algorithms): at::globalContext().setBenchmarkCuDNN(bool). Returns the value
    /// in effect, or null when this libtorch does not export it.
    /// </summary>
    public static unsafe bool? SetCudnnBenchmark(bool enabled)
    {
        lock (Gate)
        {
            if (Context(SetBenchmark, GetBenchmark) is not { } c) return null;
            var (ctx, f) = c;
            SetFlag(ctx, f[0], enabled);
            return ((delegate* unmanaged<IntPtr, byte>)f[1])(ctx) != 0;
        }
    }

    /// <summary>Whether libtorch exports what <see cref="SetCudnnBenchmark"/> needs.</summary>
    public static bool CudnnBenchmarkSettable
    {
        get
        {
            lock (Gate) return Context(SetBenchmark, GetBenchmark) is not null;
        }
    }

    /// <summary>
    /// Free and total memory of CUDA device <paramref name="index"/> in bytes (cudaMemGetInfo, from the CUDA runtime that
    /// libtorch_cuda already loaded), or null when it cannot be asked. Makes <paramref name="index"/> the calling thread's
    /// current device, which is harmless here: every thread that calls it works on that one device.
    /// </summary>
    public static unsafe (long Free, long Total)? CudaMemoryInfo(int index)
    {
        lock (Gate)
        {
            if (!Handles.ContainsKey("torch_cuda")) return null;
            if (!Handles.TryGetValue("cudart", out var cudart))
            {
                foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
                    if (NativeLibrary.TryLoad(name, out cudart)) break;
                if (cudart == IntPtr.Zero) return null;
                Handles["cudart"] = cudart;
            }
            if (!NativeLibrary.TryGetExport(cudart, "cudaSetDevice", out var setDevice)
                || !NativeLibrary.TryGetExport(cudart, "cudaMemGetInfo", out var memGetInfo))
                return null;
            if (((delegate* unmanaged<int, int>)setDevice)(index) != 0) return null;
            nuint free = 0, total = 0;
            if (((delegate* unmanaged<nuint*, nuint*, int>)memGetInfo)(&free, &total) != 0) return null;
            return ((long)free, (long)total);
        }
    }

    /// <summary>
    /// Bit-reproducible kernels (PyTorch's cudnn.deterministic, cudnn.benchmark off, and oneDNN off on the CPU, whose
    /// multi-threaded convolution gradients vary from run to run): a run stopped and resumed then ends with the same
    /// parameters as one that was not. Slower; off by default. False when this libtorch does not export the switches.
    /// </summary>
    public static bool SetDeterministic(bool enabled)
    {
        lock (Gate)
        {
            if (Context(SetDeterministicCudnn, SetMkldnn, SetBenchmark) is not { } c) return false;
            var (ctx, f) = c;
            SetFlag(ctx, f[0], enabled);
            SetFlag(ctx, f[1], !enabled && !_mkldnnOff);   // never back on once UseNativeCpuConvolutions turned it off
            if (enabled)
            {
                SetFlag(ctx, f[2], false);
                if (Context(SetNnpack) is { } n) SetFlag(n.Context, n.Exports[0], false);   // see UseNativeCpuConvolutions
            }
            return true;
        }
    }

    static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        var key = name.StartsWith("lib", StringComparison.Ordinal) ? name[3..] : name;
        if (key.EndsWith(".so", StringComparison.Ordinal)) key = key[..^3];
        return Handles.TryGetValue(key, out var h) ? h : IntPtr.Zero;
    }

    static bool TryLoad(string path, StringBuilder trace, out IntPtr handle)
    {
        try
        {
            handle = NativeLibrary.Load(path);
            trace.AppendLine($"  loaded {path}");
            return true;
        }
        catch (DllNotFoundException e)
        {
            trace.AppendLine($"  failed {path}: {e.Message}");
            handle = IntPtr.Zero;
            return false;
        }
    }

    /// <summary>A cached copy of the bridge with GLIBCXX_3.4.32 rewritten to 3.4.30; null if it does not need one.</summary>
    static string? PatchedCopy(string bridge, StringBuilder trace)
    {
        var bytes = File.ReadAllBytes(bridge);
        var rewritten = ElfVersionPatch.Rewrite(bytes, NeededVersion, FallbackVersion);
        if (rewritten is null)
        {
            trace.AppendLine($"  {bridge} does not require {NeededVersion}; nothing to patch");
            return null;
        }
        var hash = Convert.ToHexString(SHA256.HashData(bytes))[..16].ToLowerInvariant();
        var dir = CacheDir();
        Directory.CreateDirectory(dir);
        var target = Path.Combine(dir, $"libLibTorchSharp-{hash}-glibcxx30.so");
        if (!File.Exists(target))
        {
            // Several processes may start at once: write a private file, then rename over the shared name.
            var tmp = $"{target}.{Environment.ProcessId}.tmp";
            File.WriteAllBytes(tmp, rewritten);
            File.Move(tmp, target, overwrite: true);
        }
        trace.AppendLine($"  rewrote {NeededVersion} -> {FallbackVersion} in a copy: {target}");
        return target;
    }

    static string CacheDir()
    {
        var configured = NullIfEmpty(Environment.GetEnvironmentVariable(CacheDirVariable));
        if (configured is not null) return configured;
        var xdg = NullIfEmpty(Environment.GetEnvironmentVariable("XDG_CACHE_HOME"));
        var home = NullIfEmpty(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));
        var root = xdg ?? (home is null ? Path.GetTempPath() : Path.Combine(home, ".cache"));
        return Path.Combine(root, "gancluster", "native");
    }

    static TorchLoadException Fail(StringBuilder trace, string? explicitDir)
    {
        var advice = new StringBuilder()
            .AppendLine("What to do:")
            .AppendLine($"  - To use an existing PyTorch install (CPU or CUDA), set {LibDirVariable} to its torch/lib directory:")
            .AppendLine($"      export {LibDirVariable}=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),\"lib\"))')")
            .AppendLine("  - For the bundled CPU libtorch, build the project so NuGet restores libtorch-cpu-linux-x64 next to the app (dotnet build).")
            .AppendLine($"  - A libstdc++ older than GLIBCXX_3.4.30 is not supported; the patched copy is cached under {CacheDir()} (set {CacheDirVariable} to move it).");
        if (explicitDir is not null)
            advice.AppendLine($"  - {LibDirVariable} is set; unset it to use the bundled libtorch instead.");
        return new TorchLoadException($"Could not load libtorch for TorchSharp.\nTried:\n{trace}{advice}");
    }
}
