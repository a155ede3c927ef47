using GanCluster.Protocol;

namespace GanCluster.Training.Core;

/// <summary>
/// Goodfellow et al. 2014, Algorithm 1: each iteration is k discriminator updates, then one generator update.
/// Pure: the engine's update loop and the coordinator both walk it, on the protocol's <see cref="StepKey"/>.
/// </summary>
public static class GanSchedule
{
    public static StepKey First { get; } = new(0, StepPhase.Discriminator, 0);

    public static StepKey Next(StepKey step, int k)
    {
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be at least 1");
        return step.Phase switch
        {
            StepPhase.Discriminator when step.SubStep + 1 < k => step with { SubStep = step.SubStep + 1 },
            StepPhase.Discriminator => new StepKey(step.Iteration, StepPhase.Generator, 0),
            _ => new StepKey(step.Iteration + 1, StepPhase.Discriminator, 0),
        };
    }

    /// <summary>The updates of one iteration, in order: D0 … D(k-1), G.</summary>
    public static IEnumerable<StepKey> Iteration(long iteration, int k)
    {
        for (var s = 0; s < k; s++) yield return new StepKey(iteration, StepPhase.Discriminator, s);
        yield return new StepKey(iteration, StepPhase.Generator, 0);
    }

    /// <summary>Discriminator updates up to and including <paramref name="step"/> (0 for null): what the data position counts.</summary>
    public static long DiscriminatorUpdatesThrough(StepKey? step, int k) =>
        step is null ? 0 : step.Iteration * k + (step.Phase == StepPhase.Discriminator ? step.SubStep + 1 : k);

    /// <summary>Updates up to and including <paramref name="step"/> (0 for null): orders positions of one run.</summary>
    public static long UpdatesThrough(StepKey? step, int k) =>
        step is null ? 0 : step.Iteration * (k + 1) + (step.Phase == StepPhase.Discriminator ? step.SubStep + 1 : k + 1);

    /// <summary>Iterations completed once <paramref name="step"/> is applied.</summary>
    public static long IterationsThrough(StepKey? step) =>
        step is null ? 0 : step.Phase == StepPhase.Generator ? step.Iteration + 1 : step.Iteration;
}
