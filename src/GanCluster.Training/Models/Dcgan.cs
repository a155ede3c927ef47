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

    /// <summary>G: z [B, nz, 1, 1] → image [B, nc, size, size] in [-1, 1].</summary>
    /// <param name="init">Generator for the initial weights (null: torch's global one).</param>
    public static Sequential Generator(int imageSize, int nz, int ngf, int nc, torch.Generator? init = null)
    {
        var layers = new List<(string, Module<Tensor, Tensor>)>();
        void Up(int inC, int outC, int kernel, int stride, int padding, bool last)
        {
            var i = layers.Count;
            layers.Add(($"convt{i}", ConvTranspose2d(inC, outC, kernel, stride, padding, bias: false)));
            if (last)
            {
                layers.Add(($"tanh{i}", Tanh()));
                return;
            }
            layers.Add(($"bn{i}", BatchNorm2d(outC)));
            layers.Add(($"relu{i}", ReLU(inplace: true)));
        }

        switch (imageSize)
        {
            case 28:
                Up(nz, ngf * 4, 7, 1, 0, false);      // [B, ngf*4, 7, 7]
                Up(ngf * 4, ngf * 2, 4, 2, 1, false); // [B, ngf*2, 14, 14]
                Up(ngf * 2, nc, 4, 2, 1, true);       // [B, nc, 28, 28]
                break;
            case 32:
                Up(nz, ngf * 8, 4, 1, 0, false);      // [B, ngf*8, 4, 4]
                Up(ngf * 8, ngf * 4, 4, 2, 1, false); // [B, ngf*4, 8, 8]
                Up(ngf * 4, ngf * 2, 4, 2, 1, false); // [B, ngf*2, 16, 16]
                Up(ngf * 2, nc, 4, 2, 1, true);       // [B, nc, 32, 32]
                break;
            case 64:
                Up(nz, ngf * 8, 4, 1, 0, false);      // [B, ngf*8, 4, 4]
                Up(ngf * 8, ngf * 4, 4, 2, 1, false); // [B, ngf*4, 8, 8]
                Up(ngf * 4, ngf * 2, 4, 2, 1, false); // [B, ngf*2, 16, 16]
                Up(ngf * 2, ngf, 4, 2, 1, false);     // [B, ngf, 32, 32]
                Up(ngf, nc, 4, 2, 1, true);           // [B, nc, 64, 64]
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, "DCGAN image size must be 28, 32 or 64");
        }
        var g = Sequential(layers);
        InitWeights(g, init);
        return g;
    }

    /// <summary>D: image [B, nc, size, size] → logits [B] (no sigmoid: losses work on logits).</summary>
    public static Sequential Discriminator(int imageSize, int ndf, int nc, torch.Generator? init = null)
    {
        var layers = new List<(string, Module<Tensor, Tensor>)>();
        void Down(int inC, int outC, int kernel, int stride, int padding, bool batchNorm, bool last = false)
        {
            var i = layers.Count;
            layers.Add(($"conv{i}", Conv2d(inC, outC, kernel, stride, padding, bias: false)));
            if (last) return;
            if (batchNorm) layers.Add(($"bn{i}", BatchNorm2d(outC)));
            layers.Add(($"lrelu{i}", LeakyReLU(0.2, inplace: true)));
        }

        switch (imageSize)
        {
            case 28:
                Down(nc, ndf, 4, 2, 1, false);         // [B, ndf, 14, 14]
                Down(ndf, ndf * 2, 4, 2, 1, true);     // [B, ndf*2, 7, 7]
                Down(ndf * 2, 1, 7, 1, 0, false, true); // [B, 1, 1, 1]
                break;
            case 32:
                Down(nc, ndf, 4, 2, 1, false);         // [B, ndf, 16, 16]
                Down(ndf, ndf * 2, 4, 2, 1, true);     // [B, ndf*2, 8, 8]
                Down(ndf * 2, ndf * 4, 4, 2, 1, true); // [B, ndf*4, 4, 4]
                Down(ndf * 4, 1, 4, 1, 0, false, true); // [B, 1, 1, 1]
                break;
            case 64:
                Down(nc, ndf, 4, 2, 1, false);         // [B, ndf, 32, 32]
                Down(ndf, ndf * 2, 4, 2, 1, true);     // [B, ndf*2, 16, 16]
                Down(ndf * 2, ndf * 4, 4, 2, 1, true); // [B, ndf*4, 8, 8]
                Down(ndf * 4, ndf * 8, 4, 2, 1, true); // [B, ndf*8, 4, 4]
                Down(ndf * 8, 1, 4, 1, 0, false, true); // [B, 1, 1, 1]
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(imageSize), imageSize, "DCGAN image size must be 28, 32 or 64");
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
