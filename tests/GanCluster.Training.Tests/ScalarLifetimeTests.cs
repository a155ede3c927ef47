using GanCluster.Training.Core;
using GanCluster.Training.Models;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

/// <summary>
/// The hot path keeps every Scalar it hands libtorch alive (see <see cref="Scalars"/>). Each test runs its work while
/// another thread collects and runs finalizers back to back: with TorchSharp's own nn.LeakyReLU(0.2) in the first test
/// this failed within about 25,000 forwards ("Expected false to be true … toFloat", a freed scalar read by libtorch).
/// </summary>
[Collection(nameof(ScalarLifetimeTests))]
public sealed class ScalarLifetimeTests
{
    public ScalarLifetimeTests() => TorchSetup.Ensure();

    /// <summary>
    /// Runs <paramref name="body"/> at least <paramref name="times"/> times while another thread keeps collecting, and
    /// on until <paramref name="collections"/> collections have run alongside (a loaded machine collects more slowly;
    /// at most 20 × <paramref name="times"/>); returns how many ran.
    /// </summary>
    static int UnderCollections(int times, int collections, Action<int> body)
    {
        var stop = 0;
        var ran = 0;
        var collector = new Thread(() =>
        {
            while (Volatile.Read(ref stop) == 0)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Interlocked.Increment(ref ran);
            }
        });
        collector.Start();
        try
        {
            for (var i = 0; i < times || Volatile.Read(ref ran) < collections && i < 20 * times; i++) body(i);
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            collector.Join();
        }
        return ran;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LeakyReLU_keeps_its_slope_alive_through_collections(bool inplace)
    {
        using var layer = new HeldLeakyReLU(0.2, inplace);
        using var x = linspace(-4, 4, 64 * 128).reshape(64, 128);
        using var expected = where(x.ge(0), x, x.mul(0.2));   // once, before the collector starts
        var collections = UnderCollections(40_000, 101, _ =>
        {
            using var scope = NewDisposeScope();
            layer.forward(inplace ? x.clone() : x);
        });
        Assert.True(collections > 100, $"only {collections} collections ran alongside");
        using var y = layer.forward(inplace ? x.clone() : x);
        Assert.True(y.allclose(expected), "LeakyReLU(0.2) computed something else");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_replica_trains_through_collections(bool guardedStep)
    {
        var spec = TinySpecs.Ring8(Path.Combine(Path.GetTempPath(), "unused"), 1);
        using var replica = new GanReplica(spec, CPU, noiseSeed: 5);
        using var ok = tensor(true);
        using var gen = new Generator(9);
        var collections = UnderCollections(1_000, 11, i =>
        {
            using var scope = NewDisposeScope();
            var real = randn([64, 2], generator: gen);
            replica.SetIteration(i);
            replica.ComputeDiscriminatorGradients(real, last: true);
            replica.ApplyDiscriminator(guardedStep ? ok : null);
            replica.ComputeGeneratorGradients(64);
            replica.ApplyGenerator(guardedStep ? ok : null);
        });
        Assert.True(collections > 10, $"only {collections} collections ran alongside");
        Assert.True(replica.FlatD.Values.isfinite().all().item<bool>() && replica.FlatG.Values.isfinite().all().item<bool>(),
            "the parameters are not all finite after training");
    }
}

/// <summary>Alone: the collector thread would also stress the numbers other test classes pass as Scalars.</summary>
[CollectionDefinition(nameof(ScalarLifetimeTests), DisableParallelization = true)]
public sealed class ScalarLifetimeCollection;
