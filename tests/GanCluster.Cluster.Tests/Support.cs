using GanCluster.Actors.Worker;
using GanCluster.Training.Spec;

namespace GanCluster.Cluster.Tests;

/// <summary>
/// An all-reduce among threads of this process: every rank's weighted contribution is summed in rank order (in double),
/// so all ranks get identical floats; a broadcast copies rank 0's floats. Stands in for the TCP ring when testing the mathematics.
/// </summary>
public sealed class InProcessGroup(int size)
{
    readonly Barrier _barrier = new(size);
    readonly float[]?[] _data = new float[size][];
    readonly double[] _weights = new double[size];
    float[] _result = [];
    double _total;

    public IAllReduce Member(int rank) => new MemberImpl(this, rank);

    sealed class MemberImpl(InProcessGroup g, int rank) : IAllReduce
    {
        public double WeightedMean(Span<float> data, double weight)
        {
            g._data[rank] = data.ToArray();
            g._weights[rank] = weight;
            g._barrier.SignalAndWait(TimeSpan.FromMinutes(1));
            if (rank == 0)
            {
                g._total = g._weights.Sum();
                var acc = new double[data.Length];
                for (var r = 0; r < g._data.Length; r++)
                    for (var i = 0; i < acc.Length; i++) acc[i] += g._weights[r] * g._data[r]![i];
                g._result = acc.Select(v => (float)(v / g._total)).ToArray();
            }
            g._barrier.SignalAndWait(TimeSpan.FromMinutes(1));
            g._result.CopyTo(data);
            var total = g._total;
            g._barrier.SignalAndWait(TimeSpan.FromMinutes(1));
            return total;
        }

        public void Broadcast(Span<float> data)
        {
            if (rank == 0) g._result = data.ToArray();
            g._barrier.SignalAndWait(TimeSpan.FromMinutes(1));
            if (g._result.Length != data.Length) throw new InvalidOperationException($"rank {rank}: broadcast of {data.Length} floats, rank 0 sent {g._result.Length}");
            g._result.CopyTo(data);
            g._barrier.SignalAndWait(TimeSpan.FromMinutes(1));
        }

        public void Dispose() { }
    }
}

public static class Specs
{
    /// <summary>An MLP GAN (no BatchNorm) on ring8 that runs a step in milliseconds.</summary>
    public static RunSpec Ring8(int batch, int iterations, int k = 1, string output = "") => new()
    {
        Name = "eq",
        Dataset = new DatasetSpec { Kind = "ring8", Size = 3000 },
        Model = new ModelSpec { Kind = "mlp", Nz = 4, Ngf = 32, Ndf = 32 },
        Training = new TrainingSpec { K = k, Iterations = iterations, BatchSize = batch, LrD = 1e-3, LrG = 1e-3, Seed = 5, LogEvery = 1 },
        Checkpoint = new CheckpointSpec { Every = 1000, Keep = 1 },
        Output = output,
    };
}
