using System.Globalization;
using GanCluster.Training.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Quality;

/// <summary>The quality of a set of generated images against the real data, by the dataset's own classifier.</summary>
/// <param name="FrechetDistance">Fréchet distance between Gaussians fitted to the classifier's penultimate features of the
/// generated and of the real images (0 = same mean and covariance). Not Inception-FID: comparable only between runs scored
/// by the same classifier (same dataset files, image size and classifier version).</param>
/// <param name="ClassKl">KL(real ‖ generated) of the predicted-class histograms, in nats (0 = the same class mix).</param>
/// <param name="ConfidentFraction">Share of generated images the classifier puts in one class with probability above 0.9.</param>
public sealed record ImageQualityResult(double FrechetDistance, double ClassKl, double ConfidentFraction, int Samples)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"FD {FrechetDistance:F2}, class KL {ClassKl:F3}, confident {ConfidentFraction:P1} of {Samples}");

    /// <summary>Lower is better: the checkpoint to keep with <c>checkpoint.keepBest</c> has the lowest distance.</summary>
    public bool BetterThan(ImageQualityResult other) => FrechetDistance < other.FrechetDistance;
}

/// <summary>What the classifier sees in a set of images: the mean and covariance of its features, its class histogram.</summary>
/// <param name="Covariance">Row-major [dim, dim], the unbiased sample covariance.</param>
/// <param name="ClassShares">Share of the images predicted as each class (argmax).</param>
/// <param name="ConfidentFraction">Share of images whose top class probability is above <see cref="ImageQuality.ConfidenceThreshold"/>.</param>
public sealed record FeatureStats(double[] Mean, double[] Covariance, double[] ClassShares, double ConfidentFraction, int Count);

public static class ImageQuality
{
    public const double ConfidenceThreshold = 0.9;
    /// <summary>The noise seed of scores at saves and of <c>gancluster eval</c> by default: two checkpoints are scored on the same z.</summary>
    public const long DefaultSeed = 0;
    /// <summary>Generated images per score by default (<c>evaluation.samples</c>, <c>eval --count</c>).</summary>
    public const int DefaultCount = 2000;
    /// <summary>Images per generator and classifier forward pass.</summary>
    const int Batch = 250;
    /// <summary>Floor of a class share in the KL: a class the generator never makes costs log(share / 1e-6), not infinity.</summary>
    const double ShareFloor = 1e-6;

    /// <summary>
    /// Scores <paramref name="count"/> images of <paramref name="replica"/>'s G, drawn from noise seeded with
    /// <paramref name="seed"/> (so two checkpoints are scored on the same z), against the classifier's real reference.
    /// G runs on the replica's device (eval mode), the classifier on the CPU.
    /// </summary>
    public static ImageQualityResult Score(QualityClassifier classifier, GanReplica replica, int count, long seed)
    {
        if (!replica.IsImage) throw new ArgumentException("a 2-D model is rated by mode coverage, not by an image classifier", nameof(replica));
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 2);
        using var gen = new Generator((ulong)seed);   // CPU: see GanReplica.DrawNormal
        IEnumerable<Tensor> Batches()
        {
            for (var done = 0; done < count; done += Batch)
            {
                // No scope may stay open across the yield: the consumer's own scopes nest in between.
                Tensor images;
                using (var scope = NewDisposeScope())
                {
                    var z = replica.SampleNoise(Math.Min(Batch, count - done), gen);
                    images = replica.Generate(z).cpu().DetachFromDisposeScope();
                }
                yield return images;   // disposed by Summarize
            }
        }
        return Compare(classifier.Summarize(Batches()), classifier.Info.Reference);
    }

    /// <summary>The scores of <paramref name="generated"/> against <paramref name="reference"/> (real images).</summary>
    public static ImageQualityResult Compare(FeatureStats generated, FeatureStats reference) => new(
        FrechetDistance(generated.Mean, generated.Covariance, reference.Mean, reference.Covariance),
        ClassKl(reference.ClassShares, generated.ClassShares),
        generated.ConfidentFraction,
        generated.Count);

    /// <summary>
    /// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½), in fp64. Σ₁^½ comes from a symmetric eigen-decomposition
    /// (eigenvalues below 0, rounding noise of a PSD matrix, count as 0), and tr (Σ₁^½ Σ₂ Σ₁^½)^½ is the sum of the
    /// square roots of that symmetric matrix's eigenvalues: no general (non-symmetric) matrix square root is needed.
    /// </summary>
    public static double FrechetDistance(double[] mean1, double[] cov1, double[] mean2, double[] cov2)
    {
        var d = mean1.Length;
        if (mean2.Length != d || cov1.Length != d * d || cov2.Length != d * d)
            throw new ArgumentException($"means of {mean1.Length} and {mean2.Length} values, covariances of {cov1.Length} and {cov2.Length}: expected {d} and {d * d}");
        using var scope = NewDisposeScope();
        using Scalar zero = 0.0, half = 0.5;   // held (see Scalars)
        var s1 = tensor(cov1, [d, d], ScalarType.Float64);
        var s2 = tensor(cov2, [d, d], ScalarType.Float64);
        var (w1, v1) = linalg.eigh(s1);
        var root1 = v1.mul(w1.clamp_min(zero).sqrt().unsqueeze(0)).matmul(v1.t());
        var m = root1.matmul(s2).matmul(root1);
        var symmetric = m.add(m.t()).mul(half);   // symmetric in exact arithmetic; remove the rounding asymmetry
        var traceRoot = linalg.eigvalsh(symmetric).clamp_min(zero).sqrt().sum().item<double>();

        double meanTerm = 0, trace1 = 0, trace2 = 0;
        for (var i = 0; i < d; i++)
        {
            var diff = mean1[i] - mean2[i];
            meanTerm += diff * diff;
            trace1 += cov1[i * d + i];
            trace2 += cov2[i * d + i];
        }
        // Never below 0 but by rounding (two equal sets give ~1e-12): report 0 then.
        return Math.Max(0, meanTerm + trace1 + trace2 - 2 * traceRoot);
    }

    /// <summary>KL(<paramref name="real"/> ‖ <paramref name="generated"/>) in nats, each share floored at 1e-6 and renormalised.</summary>
    public static double ClassKl(double[] real, double[] generated)
    {
        if (real.Length != generated.Length) throw new ArgumentException("the histograms have different numbers of classes");
        static double[] Floor(double[] p)
        {
            var f = p.Select(v => Math.Max(v, ShareFloor)).ToArray();
            var sum = f.Sum();
            return f.Select(v => v / sum).ToArray();
        }
        var (p, q) = (Floor(real), Floor(generated));
        double kl = 0;
        for (var i = 0; i < p.Length; i++) kl += p[i] * Math.Log(p[i] / q[i]);
        return Math.Max(0, kl);
    }

    /// <summary>Mean and unbiased covariance (row-major) of the rows of <paramref name="x"/> [n, d], in fp64.</summary>
    public static (double[] Mean, double[] Covariance) MeanAndCovariance(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x64 = x.to_type(ScalarType.Float64);
        var n = x64.shape[0];
        if (n < 2) throw new ArgumentException($"a covariance needs at least 2 samples (got {n})");
        var mean = x64.mean([0L]);
        var centred = x64.sub(mean);
        using Scalar scale = 1.0 / (n - 1);
        var cov = centred.t().matmul(centred).mul(scale);
        return (mean.data<double>().ToArray(), cov.contiguous().data<double>().ToArray());
    }
}
