using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class SafetensorsTests
{
    public SafetensorsTests() => TorchSetup.Ensure();

    static RunSpec Dcgan64(long seed) => new()
    {
        Dataset = new DatasetSpec { Kind = "folder", ImageSize = 64, Channels = 3 },
        Model = new ModelSpec { Kind = "dcgan", Nz = 100, Ngf = 64, Ndf = 64 },
        Training = new TrainingSpec { Seed = seed },
    };

    [Fact]
    public void An_exported_generator_loads_into_a_fresh_one_that_samples_identically()
    {
        using var dir = new TempFolder();
        var path = Path.Combine(dir.Path, "generator.safetensors");
        using var trained = new GanReplica(Dcgan64(1), CPU, 0);
        // Move the weights and the BatchNorm statistics away from their initial values first.
        using (var scope = NewDisposeScope())
        {
            trained.ComputeDiscriminatorGradients(rand(8, 3, 64, 64) * 2 - 1, last: true);
            trained.ApplyDiscriminator();
            trained.ComputeGeneratorGradients(8);
            trained.ApplyGenerator();
        }
        SafetensorsExport.Save(trained.G, path);

        using var fresh = new GanReplica(Dcgan64(2), CPU, 0);
        using var z = randn(6, 100, 1, 1);
        using (var before = fresh.Generate(z))
        using (var reference = trained.Generate(z))
            Assert.False(before.allclose(reference));
        SafetensorsExport.Load(fresh.G, path);
        using var a = trained.Generate(z);
        using var b = fresh.Generate(z);
        Assert.Equal(a.data<float>().ToArray(), b.data<float>().ToArray());
    }

    [Fact]
    public void Keys_and_shapes_are_those_of_pytorch_examples_dcgan()
    {
        using var dir = new TempFolder();
        var path = Path.Combine(dir.Path, "g.safetensors");
        using var replica = new GanReplica(Dcgan64(1), CPU, 0);
        SafetensorsExport.Save(replica.G, path);
        var keys = SafetensorsExport.Describe(path).ToDictionary(k => k.Key, k => k.Shape);
        Assert.Equal(new long[] { 100, 512, 4, 4 }, keys["0.weight"]);       // ConvTranspose2d(nz, ngf*8, 4, 1, 0)
        Assert.Equal(new long[] { 512 }, keys["1.weight"]);                  // BatchNorm2d(ngf*8)
        Assert.Equal(new long[] { 512 }, keys["1.running_mean"]);
        Assert.Equal(new long[] { 64, 3, 4, 4 }, keys["12.weight"]);         // the output ConvTranspose2d(ngf, nc)
        Assert.DoesNotContain(keys.Keys, k => k.StartsWith("13."));          // Tanh has no tensors
        Assert.Equal(5 + 4 * 5, keys.Count);                                 // 5 convs + 4 BatchNorms × (weight, bias, mean, var, count)
    }

    [Fact]
    public void A_file_of_another_model_is_refused()
    {
        using var dir = new TempFolder();
        var path = Path.Combine(dir.Path, "d.safetensors");
        using var replica = new GanReplica(Dcgan64(1), CPU, 0);
        SafetensorsExport.Save(replica.D, path);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsExport.Load(replica.G, path));
        Assert.Contains(path, e.Message);
    }
}
