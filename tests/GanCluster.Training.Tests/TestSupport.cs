using GanCluster.Training.Spec;

namespace GanCluster.Training.Tests;

/// <summary>Small run specs that train in seconds on 2 CPU cores.</summary>
public static class TinySpecs
{
    public static RunSpec Ring8(string output, int iterations, int hidden = 32) => new()
    {
        Name = "tiny-ring8",
        Dataset = new DatasetSpec { Kind = "ring8", Size = 4096 },
        Model = new ModelSpec { Kind = "mlp", Nz = 2, Ngf = hidden, Ndf = hidden },
        Training = new TrainingSpec { K = 1, Iterations = iterations, BatchSize = 64, LrD = 1e-3, LrG = 1e-3, Seed = 11, LogEvery = Math.Max(1, iterations / 2) },
        Checkpoint = new CheckpointSpec { Every = Math.Max(1, iterations / 2), Keep = 2 },
        Output = output,
    };
}
