using GanCluster.DataPlane;

namespace GanCluster.Actors.Worker;

/// <summary>The TCP ring as the session's all-reduce.</summary>
public sealed class RingReduce(RingAllReduce ring) : IAllReduce
{
    public double WeightedMean(Span<float> data, double weight) => ring.AllReduceWeightedMean(data, weight);
    public void Dispose() => ring.Dispose();
}
