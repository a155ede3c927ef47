using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

public class ScheduleTests
{
    public ScheduleTests() => TorchSetup.Ensure();

    [Theory]
    [InlineData(1, "it0/D0 it0/G it1/D0 it1/G")]
    [InlineData(3, "it0/D0 it0/D1 it0/D2 it0/G it1/D0 it1/D1 it1/D2 it1/G")]
    public void Next_walks_k_discriminator_updates_then_one_generator_update(int k, string expected)
    {
        var steps = new List<StepKey>();
        var s = GanSchedule.First;
        while (s.Iteration < 2)
        {
            steps.Add(s);
            s = GanSchedule.Next(s, k);
        }
        Assert.Equal(expected, string.Join(' ', steps));
        Assert.Equal(steps.Take(k + 1), GanSchedule.Iteration(0, k));
    }

    [Fact]
    public void K_below_one_is_rejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => GanSchedule.Next(GanSchedule.First, 0));

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Local_trainer_applies_updates_in_schedule_order(int k)
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 4) with { Training = TinySpecs.Ring8(dir.Path, 4).Training with { K = k } };
        var applied = new List<StepKey>();
        new LocalTrainer(spec, CPU, TextWriter.Null) { OnUpdateApplied = applied.Add }.Run();

        Assert.Equal(4 * (k + 1), applied.Count);
        Assert.Equal(4 * k, applied.Count(s => s.Phase == StepPhase.Discriminator));
        Assert.Equal(4, applied.Count(s => s.Phase == StepPhase.Generator));
        Assert.Equal(Enumerable.Range(0, 4).SelectMany(i => GanSchedule.Iteration(i, k)), applied);
    }

    [Fact]
    public void A_D_update_leaves_G_untouched_and_a_G_update_leaves_D_untouched()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 1);
        random.manual_seed(3);
        using var replica = new GanReplica(spec, CPU, noiseSeed: 3);
        using var real = randn(32, 2);

        var (g0, d0) = (Snapshot(replica.G), Snapshot(replica.D));
        replica.ComputeDiscriminatorGradients(real, last: true);
        replica.ApplyDiscriminator();
        var (g1, d1) = (Snapshot(replica.G), Snapshot(replica.D));
        Assert.Equal(g0, g1);
        Assert.NotEqual(d0, d1);

        replica.ComputeGeneratorGradients(32);
        replica.ApplyGenerator();
        var (g2, d2) = (Snapshot(replica.G), Snapshot(replica.D));
        Assert.Equal(d1, d2);
        Assert.NotEqual(g1, g2);
    }

    [Fact]
    public void The_generator_step_computes_no_gradient_for_D()
    {
        using var dir = new TempFolder();
        random.manual_seed(5);
        using var replica = new GanReplica(TinySpecs.Ring8(dir.Path, 1), CPU, noiseSeed: 5);
        replica.FlatD.ZeroGrad();
        replica.ComputeGeneratorGradients(16);
        Assert.All(replica.D.parameters(), p => Assert.True(p.grad is null || p.grad.abs().sum().item<float>() == 0));
        Assert.Contains(replica.G.parameters(), p => p.grad is not null && p.grad.abs().sum().item<float>() > 0);
        Assert.All(replica.D.parameters(), p => Assert.True(p.requires_grad));
    }

    static float[] Snapshot(nn.Module m) => m.parameters().SelectMany(p => p.detach().cpu().data<float>().ToArray()).ToArray();
}
