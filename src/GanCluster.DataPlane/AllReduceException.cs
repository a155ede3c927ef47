namespace GanCluster.DataPlane;

/// <summary>
/// A ring could not be set up, or a collective operation failed (peer gone, silent past the timeout, bad framing, ranks
/// that passed different tags or made different calls). After one is thrown by an operation the
/// <see cref="ICollective"/> (ring or in-process group) is unusable.
/// </summary>
public sealed class AllReduceException : Exception
{
    public AllReduceException(string message) : base(message) { }

    public AllReduceException(string message, Exception? inner) : base(message, inner) { }
}
