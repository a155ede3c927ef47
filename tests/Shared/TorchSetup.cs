using GanCluster.Training.Native;

namespace GanCluster.Tests.Shared;

/// <summary>Loads libtorch once for the test process (patching the bridge on Debian 12 if needed).</summary>
public static class TorchSetup
{
    static readonly Lazy<TorchEnvironment> Env = new(() => TorchRuntime.Initialize());
    public static TorchEnvironment Ensure() => Env.Value;
}
