using System.Diagnostics;
using GanCluster.Actors.Telemetry;
using GanCluster.DataPlane;

namespace GanCluster.Actors.Worker;

/// <summary>
/// A formation's collective, with the time its all-reduces take (read by the worker's <see cref="StepTimes"/>, and
/// recorded per all-reduce with its payload in <see cref="NodeMetrics"/>, tagged with <paramref name="device"/>).
/// </summary>
public sealed class TimedCollective(ICollective inner, string device = "") : ICollective
{
    readonly KeyValuePair<string, object?> _device = new("device", device);

    /// <summary>Stopwatch ticks spent in all-reduces so far.</summary>
    public long Ticks { get; private set; }

    public int Rank => inner.Rank;
    public int WorldSize => inner.WorldSize;

    public ReduceOutcome AllReduceMean(Span<float> data, double weight, long tag = 0, int flags = 0)
    {
        var start = Stopwatch.GetTimestamp();
        try { return inner.AllReduceMean(data, weight, tag, flags); }
        finally
        {
            var ticks = Stopwatch.GetTimestamp() - start;
            Ticks += ticks;
            NodeMetrics.AllReduceDuration.Record(NodeMetrics.Seconds(ticks), _device);
            NodeMetrics.AllReduceBytes.Add((long)data.Length * sizeof(float), _device);
        }
    }

    public void Broadcast(Span<float> data) => inner.Broadcast(data);
    public double[] AllGather(double value) => inner.AllGather(value);
    public void Dispose() => inner.Dispose();
}
