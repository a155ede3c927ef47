using GanCluster.Training.Quality;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests.Quality;

/// <summary>The Fréchet distance and class KL against closed forms, without any classifier.</summary>
public sealed class FrechetDistanceTests
{
    public FrechetDistanceTests() => TorchSetup.Ensure();

    [Fact]
    public void Two_dimensional_gaussians_match_the_closed_form()
    {
        // For 2×2 PSD matrices tr √M = √(tr M + 2 √det M), and Σ₁^½ Σ₂ Σ₁^½ has the trace of Σ₁Σ₂ and det Σ₁ · det Σ₂.
        double[] m1 = [0.5, -1.0], m2 = [2.0, 0.25];
        double[] s1 = [2.0, 0.5, 0.5, 1.0], s2 = [1.0, -0.3, -0.3, 3.0];   // they do not commute
        var trS1S2 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
        var det1 = s1[0] * s1[3] - s1[1] * s1[2];
        var det2 = s2[0] * s2[3] - s2[1] * s2[2];
        var expected = Math.Pow(m1[0] - m2[0], 2) + Math.Pow(m1[1] - m2[1], 2) + s1[0] + s1[3] + s2[0] + s2[3]
                       - 2 * Math.Sqrt(trS1S2 + 2 * Math.Sqrt(det1 * det2));

        Assert.Equal(expected, ImageQuality.FrechetDistance(m1, s1, m2, s2), 10);
        Assert.Equal(expected, ImageQuality.FrechetDistance(m2, s2, m1, s1), 10);   // symmetric
    }

    [Fact]
    public void Diagonal_gaussians_match_the_closed_form_and_equal_ones_give_zero()
    {
        const int d = 64;
        var random = new Random(3);
        var mean1 = Enumerable.Range(0, d).Select(_ => random.NextDouble()).ToArray();
        var mean2 = Enumerable.Range(0, d).Select(_ => random.NextDouble()).ToArray();
        var var1 = Enumerable.Range(0, d).Select(_ => 0.1 + random.NextDouble()).ToArray();
        var var2 = Enumerable.Range(0, d).Select(_ => 0.1 + random.NextDouble()).ToArray();
        double[] Diagonal(double[] v)
        {
            var m = new double[d * d];
            for (var i = 0; i < d; i++) m[i * d + i] = v[i];
            return m;
        }
        var expected = Enumerable.Range(0, d).Sum(i => Math.Pow(mean1[i] - mean2[i], 2) + Math.Pow(Math.Sqrt(var1[i]) - Math.Sqrt(var2[i]), 2));
        Assert.Equal(expected, ImageQuality.FrechetDistance(mean1, Diagonal(var1), mean2, Diagonal(var2)), 8);

        // A full (non-diagonal) covariance against itself: zero up to rounding.
        using var gen = new Generator(9);
        using var a = randn([d, 2 * d], ScalarType.Float64, CPU, generator: gen);
        using var spd = a.matmul(a.t());
        var s = spd.data<double>().ToArray();
        Assert.True(ImageQuality.FrechetDistance(mean1, s, mean1, s) < 1e-6 * s.Where((_, i) => i % (d + 1) == 0).Sum());
    }

    [Fact]
    public void Sample_statistics_of_two_gaussians_approach_the_closed_form()
    {
        const int n = 200_000;
        double[] sd1 = [1.0, 2.0, 0.5, 1.5], sd2 = [1.5, 1.0, 0.5, 3.0], shift = [1.0, 0.0, -2.0, 0.5];
        using var gen = new Generator(21);
        using var z1 = randn([n, 4], ScalarType.Float64, CPU, generator: gen);
        using var z2 = randn([n, 4], ScalarType.Float64, CPU, generator: gen);
        using var scale1 = tensor(sd1);
        using var scale2 = tensor(sd2);
        using var offset = tensor(shift);
        using var x1 = z1.mul(scale1);
        using var x2 = z2.mul(scale2).add(offset);
        var (mu1, c1) = ImageQuality.MeanAndCovariance(x1);
        var (mu2, c2) = ImageQuality.MeanAndCovariance(x2);

        var expected = Enumerable.Range(0, 4).Sum(i => shift[i] * shift[i] + Math.Pow(sd1[i] - sd2[i], 2));
        var measured = ImageQuality.FrechetDistance(mu1, c1, mu2, c2);
        Assert.InRange(measured, expected * 0.98, expected * 1.02);
    }

    [Fact]
    public void Class_kl_is_zero_for_the_same_mix_and_grows_when_a_class_is_dropped()
    {
        var uniform = Enumerable.Repeat(0.1, 10).ToArray();
        Assert.Equal(0, ImageQuality.ClassKl(uniform, uniform), 12);

        double[] skewed = [0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05];
        var expected = uniform.Zip(skewed).Sum(p => p.First * Math.Log(p.First / p.Second));
        Assert.Equal(expected, ImageQuality.ClassKl(uniform, skewed), 12);

        // A class the generator never makes: finite (floored at 1e-6) and large.
        double[] dropped = [0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0];
        var kl = ImageQuality.ClassKl(uniform, dropped);
        Assert.True(double.IsFinite(kl) && kl > 1, $"{kl}");
    }

    [Fact]
    public void The_result_prints_as_one_line()
    {
        var line = new ImageQualityResult(12.25, 0.0412, 0.8723, 2000).ToString();
        Assert.Equal("FD 12.25, class KL 0.041, confident 87.2 % of 2000", line);
    }
}
