using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace GanCluster.Training.Models;

/// <summary>
/// Fully-connected G and D for 2-D data (ring8, grid25), three hidden layers each, no BatchNorm.
/// G uses LeakyReLU(0.05): with plain ReLU some seeds lost every unit early and G froze on one point.
/// </summary>
public static class Mlp
{
    /// <summary>G: z [B, nz] → point [B, 2].</summary>
    public static Sequential Generator(int nz, int hidden, torch.Generator? init = null) => Init(Sequential(
        ("fc0", Linear(nz, hidden)), ("lrelu0", new HeldLeakyReLU(0.05)),
        ("fc1", Linear(hidden, hidden)), ("lrelu1", new HeldLeakyReLU(0.05)),
        ("fc2", Linear(hidden, hidden)), ("lrelu2", new HeldLeakyReLU(0.05)),
        ("out", Linear(hidden, 2))), init);

    /// <summary>D: point [B, 2] → logits [B].</summary>
    public static Sequential Discriminator(int hidden, torch.Generator? init = null) => Init(Sequential(
        ("fc0", Linear(2, hidden)), ("lrelu0", new HeldLeakyReLU(0.2)),
        ("fc1", Linear(hidden, hidden)), ("lrelu1", new HeldLeakyReLU(0.2)),
        ("fc2", Linear(hidden, hidden)), ("lrelu2", new HeldLeakyReLU(0.2)),
        ("out", Linear(hidden, 1)), ("flatten", Flatten(0))), init);

    /// <summary>PyTorch's default Linear init, U(−1/√fan_in, 1/√fan_in) for weights and biases, from <paramref name="gen"/>.</summary>
    static Sequential Init(Sequential net, torch.Generator? gen)
    {
        if (gen is null) return net;
        using var _ = no_grad();
        foreach (var linear in net.children().OfType<Linear>())
        {
            var bound = 1.0 / Math.Sqrt(linear.in_features);
            SeededInit.Uniform(linear.weight!, -bound, bound, gen);
            if (linear.bias is not null) SeededInit.Uniform(linear.bias, -bound, bound, gen);
        }
        return net;
    }
}
