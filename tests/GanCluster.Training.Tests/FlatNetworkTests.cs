using GanCluster.Training.Core;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

/// <summary>The flat-buffer optimizer against TorchSharp's own Adam and SGD, and their checkpoint format in both directions.</summary>
public class FlatNetworkTests
{
    public FlatNetworkTests() => TorchSetup.Ensure();

    static Sequential Net(int seed)
    {
        random.manual_seed(seed);
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1));
    }

    static OptimizerHelper Optimizer(Sequential net, string kind) =>
        kind == "sgd" ? optim.SGD(net.parameters(), 0.05, 0.9) : optim.Adam(net.parameters(), 0.01, 0.5, 0.999);

    // A generator of its own: tests of other classes draw from torch's global one in parallel.
    static void Backward(Sequential net, int seed)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)(100 + seed));
        net.forward(randn(16, 4, generator: generator)).square().mean().backward();
    }

    /// <summary>A second network with <paramref name="net"/>'s weights (not a second draw from the global generator, which other tests share).</summary>
    static Sequential Twin(Sequential net)
    {
        var twin = Net(0);
        using (no_grad())
            foreach (var (to, from) in twin.parameters().Zip(net.parameters())) to.copy_(from);
        return twin;
    }

    static float[] Values(Sequential net) => net.parameters().SelectMany(p => p.detach().data<float>().ToArray()).ToArray();

    /// <summary>
    /// <paramref name="flat"/>'s buffer read back in <c>parameters()</c> order: the flat layout puts linear and
    /// convolution parameters first (<see cref="FlatNetwork.ComputeLength"/>), so BatchNorm's come last.
    /// </summary>
    static float[] InParameterOrder(FlatNetwork network, Sequential net, Tensor flat)
    {
        var all = flat.data<float>().ToArray();
        return net.parameters().SelectMany(p => all.AsSpan((int)network.StartOf(p), (int)p.numel()).ToArray()).ToArray();
    }

    static void AssertClose(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6f + 1e-5f * Math.Abs(expected[i]), $"value {i}: {expected[i]} vs {actual[i]}");
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("sgd")]
    public void Steps_over_the_flat_buffers_match_TorchSharps_optimizer_per_parameter(string kind)
    {
        using var stock = Net(1);
        using var flat = Twin(stock);
        using var stockOpt = Optimizer(stock, kind);
        using var flatOpt = Optimizer(flat, kind);
        using var network = new FlatNetwork(flat, flatOpt, kind, 0.5, 0.999, 0.9, CPU);
        Assert.Equal(stock.parameters().Sum(p => p.numel()), network.Length);

        for (var step = 0; step < 4; step++)
        {
            foreach (var g in stockOpt.ParamGroups.Concat(flatOpt.ParamGroups)) g.LearningRate *= 0.8;   // as lrDecay does
            stockOpt.zero_grad();
            network.ZeroGrad();
            Backward(stock, step);
            Backward(flat, step);
            AssertClose(stock.parameters().SelectMany(p => p.grad!.data<float>().ToArray()).ToArray(), InParameterOrder(network, flat, network.Grads));
            stockOpt.step();
            network.Step();
            AssertClose(Values(stock), Values(flat));
        }
        AssertClose(Values(flat), InParameterOrder(network, flat, network.Values));   // the parameters are views of Values
        // Linear weights and biases first, BatchNorm's scale and shift after them.
        var batchNorm = flat.modules().OfType<BatchNorm1d>().Single();
        Assert.Equal(network.Length - 16, network.ComputeLength);
        Assert.Equal(network.ComputeLength, network.StartOf(batchNorm.weight!));
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("sgd")]
    public void Optimizer_state_written_from_flat_buffers_loads_into_TorchSharps_optimizer_and_back(string kind)
    {
        // Flat → stock: a checkpoint written now is read by a plain TorchSharp optimizer (and by older GanCluster versions).
        using var flat = Net(2);
        using var flatOpt = Optimizer(flat, kind);
        using var network = new FlatNetwork(flat, flatOpt, kind, 0.5, 0.999, 0.9, CPU);
        for (var step = 0; step < 3; step++)
        {
            network.ZeroGrad();
            Backward(flat, step);
            network.Step();
        }
        var state = new MemoryStream();
        using (var w = new BinaryWriter(state, System.Text.Encoding.UTF8, leaveOpen: true)) flatOpt.save_state_dict(w);

        using var stock = Net(3);
        using (no_grad())
            foreach (var (to, from) in stock.parameters().Zip(flat.parameters())) to.copy_(from);
        using var stockOpt = Optimizer(stock, kind);
        state.Position = 0;
        stockOpt.load_state_dict(new BinaryReader(state));

        // Stock → flat: the moments a stock optimizer wrote go into a new flat network.
        using var again = Net(4);
        using (no_grad())
            foreach (var (to, from) in again.parameters().Zip(stock.parameters())) to.copy_(from);
        using var againOpt = Optimizer(again, kind);
        using var againNetwork = new FlatNetwork(again, againOpt, kind, 0.5, 0.999, 0.9, CPU);
        state.Position = 0;
        againOpt.load_state_dict(new BinaryReader(state));
        againNetwork.StateLoaded();

        // One more identical step everywhere: equal only if the moments (and Adam's step count) carried over.
        network.ZeroGrad();
        Backward(flat, 9);
        network.Step();
        stockOpt.zero_grad();
        Backward(stock, 9);
        stockOpt.step();
        againNetwork.ZeroGrad();
        Backward(again, 9);
        againNetwork.Step();
        AssertClose(Values(flat), Values(stock));
        AssertClose(Values(flat), Values(again));
    }
}
