using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace GanCluster.Training.Core;

/// <summary>
/// GAN losses computed from D's logits l (D(x) = σ(l)), in the stable softplus form:
/// −log σ(l) = softplus(−l) and −log(1 − σ(l)) = softplus(l).
/// </summary>
public static class GanLoss
{
    public const string NonSaturating = "non-saturating", Minimax = "minimax";

    /// <summary>D maximises log D(x) + log(1 − D(G(z))), i.e. minimises softplus(−l_real) + softplus(l_fake) (means over the batch).</summary>
    public static Tensor Discriminator(Tensor realLogits, Tensor fakeLogits) =>
        F.softplus(-realLogits).mean() + F.softplus(fakeLogits).mean();

    /// <summary>
    /// minimax: G minimises log(1 − D(G(z))) = −softplus(l).
    /// non-saturating: G maximises log D(G(z)), i.e. minimises softplus(−l).
    /// </summary>
    public static Tensor Generator(Tensor fakeLogits, string kind) => kind switch
    {
        Minimax => (-F.softplus(fakeLogits)).mean(),
        NonSaturating => F.softplus(-fakeLogits).mean(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "loss must be non-saturating or minimax"),
    };
}
