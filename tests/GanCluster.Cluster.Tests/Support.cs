using GanCluster.Training.Spec;

namespace GanCluster.Cluster.Tests;

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
