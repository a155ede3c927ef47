using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Models;

/// <summary>
/// LeakyReLU whose slope is one Scalar held by the module. TorchSharp's <c>nn.LeakyReLU</c> makes a new Scalar from
/// the double on every forward and nothing keeps it alive during the native call (see <see cref="Core.Scalars"/>); no
/// parameters or buffers, so state dicts and checkpoints are the same as with it.
/// </summary>
public sealed class HeldLeakyReLU : ParameterLessModule<Tensor, Tensor>
{
    readonly Scalar _slope;
    readonly bool _inplace;

    public HeldLeakyReLU(double negativeSlope, bool inplace = false) : base(nameof(LeakyReLU))
    {
        NegativeSlope = negativeSlope;
        _slope = negativeSlope.ToScalar();
        _inplace = inplace;
    }

    public double NegativeSlope { get; }

    // As TorchSharp's functional leaky_relu: the in-place form returns an alias, so a Sequential may dispose it.
    public override Tensor forward(Tensor input) => _inplace ? input.leaky_relu_(_slope).alias() : input.leaky_relu(_slope);

    protected override void Dispose(bool disposing)
    {
        if (disposing) _slope.Dispose();
        base.Dispose(disposing);
    }
}
