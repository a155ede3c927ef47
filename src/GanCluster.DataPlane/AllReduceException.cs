namespace GanCluster.DataPlane;

/// <summary>
/// A ring could not be set up, or an all-reduce failed (peer gone, silent past the timeout, bad framing).
/// After one is thrown by an operation the <see cref="RingAllReduce"/> is unusable.
/// </summary>
public sealed class AllReduceException : Exception
{
    public AllReduceException(string message) : base(message) { }

    public AllReduceException(string message, Exception? inner) : base(message, inner) { }
}
