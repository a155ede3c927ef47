using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>
/// GAN losses computed from D's logits l (D(x) = σ(l)), in the stable log-sigmoid form:
/// −log σ(l) = −logsigmoid(l) = softplus(−l) and −log(1 − σ(l)) = −logsigmoid(−l) = softplus(l).
/// logsigmoid rather than softplus: TorchSharp's softplus passes β and the threshold as fresh Scalars per call, which
/// nothing keeps alive (see <see cref="Scalars"/>).
/// </summary>
public static class GanLoss
{
    public const string NonSaturating = "non-saturating", Minimax = "minimax";

    /// <summary>D maximises log D(x) + log(1 − D(G(z))), i.e. minimises softplus(−l_real) + softplus(l_fake) (means over the batch).</summary>
    public static Tensor Discriminator(Tensor realLogits, Tensor fakeLogits)
    {
        var real = realLogits.log_sigmoid().mean();              // −softplus(−l_real)
        var fake = fakeLogits.neg().log_sigmoid().mean();        // −softplus(l_fake)
        return real.add(fake, Scalars.One).neg_();
    }

    /// <summary>
    /// minimax: G minimises log(1 − D(G(z))) = −softplus(l).
    /// non-saturating: G maximises log D(G(z)), i.e. minimises softplus(−l).
    /// </summary>
    public static Tensor Generator(Tensor fakeLogits, string kind) => kind switch
    {
        Minimax => fakeLogits.neg().log_sigmoid().mean(),        // −softplus(l) = logsigmoid(−l)
        NonSaturating => fakeLogits.log_sigmoid().mean().neg(), // softplus(−l) = −logsigmoid(l)
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "loss must be non-saturating or minimax"),
    };
}
