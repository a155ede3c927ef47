using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace GanCluster.Training.Models;

/// <summary>
/// DCGAN (Radford et al. 2015): fractionally-strided convolutions in G, strided convolutions in D,
/// BatchNorm everywhere except G's output and D's input, ReLU + Tanh in G, LeakyReLU(0.2) in D.
/// Sizes 28 (MNIST: 7 → 14 → 28), 32 (4 → 8 → 16 → 32) and 64 (4 → … → 64).
/// </summary>
public static class Dcgan
{
    public static readonly int[] ImageSizes = [28, 32, 64];

    /// <summary>One convolution of a DCGAN (transposed in G) and the side of its square output.</summary>
    public sealed record Layer(int In, int Out, int Kernel, int Stride, int Padding, int OutSize);

    /// <summary>G's transposed convolutions for an image size; each but the last is followed by BatchNorm and ReLU, the last by Tanh.</summary>
    public static IReadOnlyList<Layer> GeneratorPlan(int imageSize, int nz, int ngf, int nc) => imageSize switch
    {
        28 =>
        [
            new(nz, ngf * 4, 7, 1, 0, 7),         // [B, ngf*4, 7, 7]
            new(ngf * 4, ngf * 2, 4, 2, 1, 14),   // [B, ngf*2, 14, 14]
            new(ngf * 2, nc, 4, 2, 1, 28),        // [B, nc, 28, 28]
        ],
        32 =>
        [
            new(nz, ngf * 8, 4, 1, 0, 4),         // [B, ngf*8, 4, 4]
            new(ngf * 8, ngf * 4, 4, 2, 1, 8),    // [B, ngf*4, 8, 8]
            new(ngf * 4, ngf * 2, 4, 2, 1, 16),   // [B, ngf*2, 16, 16]
            new(ngf * 2, nc, 4, 2, 1, 32),        // [B, nc, 32, 32]
        ],
        64 =>
        [
            new(nz, ngf * 8, 4, 1, 0, 4),         // [B, ngf*8, 4, 4]
            new(ngf * 8, ngf * 4, 4, 2, 1, 8),    // [B, ngf*4, 8, 8]
            new(ngf * 4, ngf * 2, 4, 2, 1, 16),   // [B, ngf*2, 16, 16]
            new(ngf * 2, ngf, 4, 2, 1, 32),       // [B, ngf, 32, 32]
            new(ngf, nc, 4, 2, 1, 64),            // [B, nc, 64, 64]
        ],
        _ => throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, "DCGAN image size must be 28, 32 or 64"),
    };

    /// <summary>D's convolutions; BatchNorm after each but the first and the last, LeakyReLU after each but the last (a logit).</summary>
    public static IReadOnlyList<Layer> DiscriminatorPlan(int imageSize, int ndf, int nc) => imageSize switch
    {
        28 =>
        [
            new(nc, ndf, 4, 2, 1, 14),            // [B, ndf, 14, 14]
            new(ndf, ndf * 2, 4, 2, 1, 7),        // [B, ndf*2, 7, 7]
            new(ndf * 2, 1, 7, 1, 0, 1),          // [B, 1, 1, 1]
        ],
        32 =>
        [
            new(nc, ndf, 4, 2, 1, 16),            // [B, ndf, 16, 16]
            new(ndf, ndf * 2, 4, 2, 1, 8),        // [B, ndf*2, 8, 8]
            new(ndf * 2, ndf * 4, 4, 2, 1, 4),    // [B, ndf*4, 4, 4]
            new(ndf * 4, 1, 4, 1, 0, 1),          // [B, 1, 1, 1]
        ],
        64 =>
        [
            new(nc, ndf, 4, 2, 1, 32),            // [B, ndf, 32, 32]
            new(ndf, ndf * 2, 4, 2, 1, 16),       // [B, ndf*2, 16, 16]
            new(ndf * 2, ndf * 4, 4, 2, 1, 8),    // [B, ndf*4, 8, 8]
            new(ndf * 4, ndf * 8, 4, 2, 1, 4),    // [B, ndf*8, 4, 4]
            new(ndf * 8, 1, 4, 1, 0, 1),          // [B, 1, 1, 1]
        ],
        _ => throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, "DCGAN image size must be 28, 32 or 64"),
    };

    /// <summary>The generator: z [B, nz, 1, 1] → image [B, nc, size, size] in [-1, 1].</summary>
    public static Sequential Generator(int imageSize, int nz, int ngf, int nc, torch.Generator? init = null)
    {
        var plan = GeneratorPlan(imageSize, nz, ngf, nc);
        var layers = new List<(string, Module<Tensor, Tensor>)>();
        for (var k = 0; k < plan.Count; k++)
        {
            var (l, i) = (plan[k], layers.Count);
            layers.Add(($"convt{i}", ConvTranspose2d(l.In, l.Out, l.Kernel, l.Stride, l.Padding, bias: false)));
            if (k == plan.Count - 1)
            {
                layers.Add(($"tanh{i}", Tanh()));
                break;
            }
            layers.Add(($"bn{i}", BatchNorm2d(l.Out)));
            layers.Add(($"relu{i}", ReLU(inplace: true)));
        }
        var g = Sequential(layers);
        InitWeights(g, init);
        return g;
    }

    /// <summary>The discriminator: image [B, nc, size, size] → logit [B].</summary>
    public static Sequential Discriminator(int imageSize, int ndf, int nc, torch.Generator? init = null)
    {
        var plan = DiscriminatorPlan(imageSize, ndf, nc);
        var layers = new List<(string, Module<Tensor, Tensor>)>();
        for (var k = 0; k < plan.Count; k++)
        {
            var (l, i) = (plan[k], layers.Count);
            layers.Add(($"conv{i}", Conv2d(l.In, l.Out, l.Kernel, l.Stride, l.Padding, bias: false)));
            if (k == plan.Count - 1) break;
            if (k > 0) layers.Add(($"bn{i}", BatchNorm2d(l.Out)));
            layers.Add(($"lrelu{i}", new HeldLeakyReLU(0.2, inplace: true)));
        }
        layers.Add(("flatten", Flatten(0)));        // [B]
        var d = Sequential(layers);
        InitWeights(d, init);
        return d;
    }

    /// <summary>Radford et al.: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0 (as pytorch/examples dcgan).</summary>
    static void InitWeights(Module module, torch.Generator? gen)
    {
        using var _ = no_grad();
        foreach (var (name, m) in module.named_modules())
        {
            switch (m)
            {
                case Conv2d c: SeededInit.Normal(c.weight!, 0.0, 0.02, gen); break;
                case ConvTranspose2d c: SeededInit.Normal(c.weight!, 0.0, 0.02, gen); break;
                case BatchNorm2d bn:
                    SeededInit.Normal(bn.weight!, 1.0, 0.02, gen);
                    init.zeros_(bn.bias!);
                    break;
            }
        }
    }
}
