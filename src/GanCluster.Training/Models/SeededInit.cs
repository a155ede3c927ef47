using static TorchSharp.torch;

namespace GanCluster.Training.Models;

/// <summary>
/// Weight initialisation from an explicit generator. TorchSharp 0.107's nn.init.uniform_/normal_ accept a generator
/// but do not draw from it (two calls with equally seeded generators differ), so the values are drawn with
/// rand/randn, which do honour it.
/// </summary>
static class SeededInit
{
    public static void Normal(Tensor t, double mean, double std, Generator? gen)
    {
        using var _ = no_grad();
        if (gen is null) nn.init.normal_(t, mean, std);
        else t.copy_(randn(t.shape, t.dtype, CPU, generator: gen) * std + mean);
    }

    public static void Uniform(Tensor t, double low, double high, Generator? gen)
    {
        using var _ = no_grad();
        if (gen is null) nn.init.uniform_(t, low, high);
        else t.copy_(rand(t.shape, t.dtype, CPU, generator: gen) * (high - low) + low);
    }
}
