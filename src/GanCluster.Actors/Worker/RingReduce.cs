using GanCluster.DataPlane;

namespace GanCluster.Actors.Worker;

/// <summary>The TCP ring as the worker session's all-reduce (one ring per formation).</summary>
public sealed class RingReduce(RingAllReduce ring) : IAllReduce
{
    /// <summary>Stopwatch ticks spent in all-reduces so far (read by the worker's <see cref="StepTimes"/>).</summary>
    public long Ticks { get; private set; }

    public double WeightedMean(Span<float> data, double weight)
    {
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        try { return ring.AllReduceWeightedMean(data, weight); }
        finally { Ticks += System.Diagnostics.Stopwatch.GetTimestamp() - start; }
    }
    public void Broadcast(Span<float> data) => ring.Broadcast(data);

    public void Dispose() => ring.Dispose();
}
