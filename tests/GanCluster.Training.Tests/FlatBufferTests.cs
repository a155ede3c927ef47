using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class FlatBufferTests
{
    public FlatBufferTests() => TorchSetup.Ensure();

    [Fact]
    public void Gather_lays_gradients_end_to_end_and_scatter_writes_them_back()
    {
        using var lin = nn.Linear(3, 2);          // weight [2,3], bias [2]
        using var scope = NewDisposeScope();
        lin.forward(randn(4, 3)).sum().backward();
        using var flat = new FlatBuffer(lin.parameters(), CPU);
        Assert.Equal(8, flat.Length);

        flat.GatherGrads();
        var expected = lin.parameters().SelectMany(p => p.grad!.data<float>().ToArray()).ToArray();
        Assert.Equal(expected, flat.Span.ToArray());

        // The cluster averages in place; scatter must carry that into every .grad.
        for (var i = 0; i < flat.Length; i++) flat.Span[i] = i;
        flat.ScatterGrads();
        Assert.Equal(Enumerable.Range(0, 8).Select(i => (float)i), lin.parameters().SelectMany(p => p.grad!.data<float>().ToArray()));
    }

    [Fact]
    public void Values_round_trip_between_replicas()
    {
        random.manual_seed(1);
        using var a = nn.Linear(4, 4);
        random.manual_seed(2);
        using var b = nn.Linear(4, 4);
        using var fa = new FlatBuffer(a.parameters(), CPU);
        using var fb = new FlatBuffer(b.parameters(), CPU);
        fa.GatherValues();
        fa.Span.CopyTo(fb.Span);
        fb.ScatterValues();
        Assert.Equal(a.parameters().SelectMany(p => p.data<float>().ToArray()), b.parameters().SelectMany(p => p.data<float>().ToArray()));
    }
}
