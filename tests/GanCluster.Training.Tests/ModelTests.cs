using GanCluster.Training.Models;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class ModelTests
{
    public ModelTests() => TorchSetup.Ensure();

    [Theory]
    [InlineData(28, 1)]
    [InlineData(28, 3)]
    [InlineData(32, 1)]
    [InlineData(32, 3)]
    [InlineData(64, 1)]
    [InlineData(64, 3)]
    public void Dcgan_shapes_for_every_image_size(int size, int nc)
    {
        using var g = Dcgan.Generator(size, nz: 16, ngf: 8, nc);
        using var d = Dcgan.Discriminator(size, ndf: 8, nc);
        using var scope = NewDisposeScope();
        var fake = g.forward(randn(5, 16, 1, 1));
        Assert.Equal(new long[] { 5, nc, size, size }, fake.shape);
        Assert.True(fake.min().item<float>() >= -1 && fake.max().item<float>() <= 1, "G ends in tanh");
        Assert.Equal(new long[] { 5 }, d.forward(fake).shape);
    }

    [Fact]
    public void Dcgan_layers_follow_the_paper()
    {
        using var g = Dcgan.Generator(64, 100, 64, 3);
        using var d = Dcgan.Discriminator(64, 64, 3);
        var gMods = g.children().ToList();
        var dMods = d.children().ToList();
        // G: ConvTranspose2d + BatchNorm + ReLU blocks, no BatchNorm on the output, Tanh last.
        Assert.IsType<TorchSharp.Modules.Tanh>(gMods[^1]);
        Assert.IsType<TorchSharp.Modules.ConvTranspose2d>(gMods[^2]);
        Assert.Equal(4, gMods.Count(m => m is TorchSharp.Modules.BatchNorm2d));
        Assert.Equal(4, gMods.Count(m => m is TorchSharp.Modules.ReLU));
        // D: strided Conv2d, LeakyReLU(0.2) (one that holds its slope: see Scalars), no BatchNorm after the input layer.
        Assert.IsType<TorchSharp.Modules.Conv2d>(dMods[0]);
        Assert.Equal(0.2, Assert.IsType<HeldLeakyReLU>(dMods[1]).NegativeSlope);
        Assert.Equal(3, dMods.Count(m => m is TorchSharp.Modules.BatchNorm2d));
        Assert.Equal(4, dMods.Count(m => m is HeldLeakyReLU));
    }

    [Fact]
    public void Dcgan_weights_are_drawn_from_normal_0_002()
    {
        random.manual_seed(1);
        using var g = Dcgan.Generator(64, 100, 64, 3);
        foreach (var conv in g.children().OfType<TorchSharp.Modules.ConvTranspose2d>())
        {
            var w = conv.weight!;
            if (w.numel() < 10_000) continue;
            Assert.InRange(w.mean().item<float>(), -0.002, 0.002);
            Assert.InRange(w.std().item<float>(), 0.019, 0.021);
        }
        foreach (var bn in g.children().OfType<TorchSharp.Modules.BatchNorm2d>())
        {
            Assert.InRange(bn.weight!.mean().item<float>(), 0.99, 1.01);
            Assert.Equal(0, bn.bias!.abs().sum().item<float>());
        }
    }

    [Theory]
    [InlineData("mlp")]
    [InlineData("dcgan")]
    public void Replicas_of_one_spec_start_from_identical_weights_whatever_the_global_rng_does(string kind)
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, 1);
        if (kind == "dcgan")
            spec = spec with { Dataset = new() { Kind = "folder", ImageSize = 32, Channels = 3 }, Model = new() { Kind = "dcgan", Nz = 8, Ngf = 4, Ndf = 4 } };
        float[] Weights(GanCluster.Training.Core.GanReplica r) =>
            r.G.parameters().Concat(r.D.parameters()).SelectMany(p => p.data<float>().ToArray()).ToArray();

        using var a = new GanCluster.Training.Core.GanReplica(spec, CPU, 0);
        using (randn(1000)) { }                              // someone else draws from the global generator
        using var b = new GanCluster.Training.Core.GanReplica(spec, CPU, 1);
        using var other = new GanCluster.Training.Core.GanReplica(spec with { Training = spec.Training with { Seed = 99 } }, CPU, 0);
        Assert.Equal(Weights(a), Weights(b));
        Assert.NotEqual(Weights(a), Weights(other));
    }

    [Fact]
    public void Mlp_shapes()
    {
        using var g = Mlp.Generator(nz: 3, hidden: 16);
        using var d = Mlp.Discriminator(hidden: 16);
        using var scope = NewDisposeScope();
        var fake = g.forward(randn(7, 3));
        Assert.Equal(new long[] { 7, 2 }, fake.shape);
        Assert.Equal(new long[] { 7 }, d.forward(fake).shape);
    }

    [Fact]
    public void Unsupported_image_size_is_rejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Dcgan.Generator(48, 100, 64, 3));
}
