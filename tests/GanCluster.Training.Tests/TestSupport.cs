using GanCluster.Training.Spec;

namespace GanCluster.Training.Tests;

/// <summary>A temporary folder removed at the end of the test.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "gancluster-test-" + Guid.NewGuid().ToString("N"));
    public void Dispose()
    {
        try { Directory.Delete(Path, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

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
