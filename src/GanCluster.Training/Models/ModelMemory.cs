using GanCluster.Training.Spec;

namespace GanCluster.Training.Models;

/// <summary>
/// A rough estimate of the memory a run needs, from its spec alone (nothing is allocated): checked before a model is
/// built, so that a spec asking for terabytes gets an error naming the estimate instead of a failed native allocation.
/// </summary>
public static class ModelMemory
{
    /// <summary>The default limit: well above any sane GAN of this project, below what breaks a machine.</summary>
    public const double DefaultLimitBytes = 64e9;

    /// <summary>Parameters of G and D, and floats of activations per sample kept by forward passes for backward.</summary>
    public static (double Parameters, double ActivationsPerSample) Count(RunSpec spec)
    {
        var m = spec.Model;
        if (m.Kind == "dcgan" && Dcgan.ImageSizes.Contains(spec.Dataset.ImageSize))
        {
            var nc = spec.Dataset.ResolvedChannels;
            double parameters = 0, g = 0, d = 0;
            foreach (var l in Dcgan.GeneratorPlan(spec.Dataset.ImageSize, m.ResolvedNz, m.ResolvedNgf, nc))
            {
                parameters += (double)l.In * l.Out * l.Kernel * l.Kernel + 2.0 * l.Out;
                g += (double)l.Out * l.OutSize * l.OutSize;
            }
            foreach (var l in Dcgan.DiscriminatorPlan(spec.Dataset.ImageSize, m.ResolvedNdf, nc))
            {
                parameters += (double)l.In * l.Out * l.Kernel * l.Kernel + 2.0 * l.Out;
                d += (double)l.Out * l.OutSize * l.OutSize;
            }
            // Each layer keeps its convolution's and its normalisation's outputs; D runs on the real batch, the fake one,
            // and again in the G update.
            return (parameters, 2 * g + 3 * 2 * d);
        }
        double h = m.ResolvedNgf, hd = m.ResolvedNdf, nz = m.ResolvedNz;
        return (nz * h + 2 * h * h + 2 * h + 3 * h + 2 + 2 * hd + 2 * hd * hd + hd + 3 * hd + 1, 4 * h + 3 * 4 * hd);
    }

    /// <summary>
    /// Bytes to train: each parameter as value, gradient and two optimizer moments on the device plus host copies of the
    /// gradients and values, and each kept activation twice (its value and its gradient), all float32.
    /// </summary>
    public static double EstimateBytes(RunSpec spec)
    {
        var (parameters, activations) = Count(spec);
        return 4 * (6 * parameters + 2 * activations * spec.Training.BatchSize);
    }
}
