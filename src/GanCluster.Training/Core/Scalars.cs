using TorchSharp;

namespace GanCluster.Training.Core;

/// <summary>
/// TorchSharp turns a number into a new <see cref="Scalar"/> for each call (including the implicit alpha of
/// <c>add(Tensor)</c> and <c>sub(Tensor)</c>) and hands libtorch only its handle. Nothing keeps that Scalar reachable
/// during the native call, so a collection on another thread can finalize it, freeing the native scalar while libtorch
/// still reads it: runs died after thousands of iterations with "Expected false to be true … toFloat" from
/// LeakyReLU (<c>ScalarLifetimeTests</c> keeps the collector busy to show the fix). Code that runs per update passes
/// these, a field, or a Scalar in a <c>using</c>, never a bare number.
/// </summary>
public static class Scalars
{
    // Static fields are roots: these are never finalized.
    public static readonly Scalar One = 1.0.ToScalar();
    public static readonly Scalar Zero = 0.0.ToScalar();

    /// <summary>A Scalar the caller keeps (a field, or a <c>using</c> local that outlives the native call).</summary>
    public static Scalar Of(double value) => value.ToScalar();
}
