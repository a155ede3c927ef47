using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class GanLossTests
{
    public GanLossTests() => TorchSetup.Ensure();

    static double Softplus(double x) => Math.Log(1 + Math.Exp(x));

    [Fact]
    public void Discriminator_loss_matches_hand_computed_values()
    {
        // D(x) = σ(l): loss = −mean log σ(l_real) − mean log(1 − σ(l_fake)).
        using var real = tensor(new float[] { 0f, 2f });
        using var fake = tensor(new float[] { -1f, 0f });
        using var loss = GanLoss.Discriminator(real, fake);
        var expected = (-Math.Log(0.5) - Math.Log(1 / (1 + Math.Exp(-2)))) / 2
                     + (-Math.Log(1 - 1 / (1 + Math.Exp(1))) - Math.Log(0.5)) / 2;
        Assert.Equal(expected, loss.item<float>(), 5);
    }

    [Fact]
    public void Non_saturating_generator_loss_is_minus_log_D_of_fake()
    {
        using var fake = tensor(new float[] { -1f, 0f, 3f });
        using var loss = GanLoss.Generator(fake, GanLoss.NonSaturating);
        var expected = new[] { -1.0, 0.0, 3.0 }.Average(l => -Math.Log(1 / (1 + Math.Exp(-l))));
        Assert.Equal(expected, loss.item<float>(), 5);
        Assert.Equal((Softplus(1) + Softplus(0) + Softplus(-3)) / 3, loss.item<float>(), 5);
    }

    [Fact]
    public void Minimax_generator_loss_is_log_of_one_minus_D_of_fake()
    {
        using var fake = tensor(new float[] { -1f, 0f, 3f });
        using var loss = GanLoss.Generator(fake, GanLoss.Minimax);
        var expected = new[] { -1.0, 0.0, 3.0 }.Average(l => Math.Log(1 - 1 / (1 + Math.Exp(-l))));
        Assert.Equal(expected, loss.item<float>(), 5);
    }

    [Fact]
    public void Losses_stay_finite_for_extreme_logits()
    {
        using var big = tensor(new float[] { -200f, 200f });
        using var d = GanLoss.Discriminator(big, big);
        using var ns = GanLoss.Generator(big, GanLoss.NonSaturating);
        using var mm = GanLoss.Generator(big, GanLoss.Minimax);
        Assert.True(float.IsFinite(d.item<float>()));
        Assert.Equal(100.0, ns.item<float>(), 3);   // mean(softplus(200), softplus(-200)) = 100
        Assert.Equal(-100.0, mm.item<float>(), 3);
    }

    [Fact]
    public void Matches_binary_cross_entropy_with_logits()
    {
        using var real = randn(16);
        using var fake = randn(16);
        using var ours = GanLoss.Discriminator(real, fake);
        using var bce = nn.functional.binary_cross_entropy_with_logits(real, ones(16)) + nn.functional.binary_cross_entropy_with_logits(fake, zeros(16));
        Assert.Equal(bce.item<float>(), ours.item<float>(), 5);
    }

    [Fact]
    public void Unknown_loss_kind_is_rejected()
    {
        using var fake = zeros(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => GanLoss.Generator(fake, "wasserstein"));
    }
}
