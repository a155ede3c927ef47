namespace GanCluster.Training.Core;

public enum Phase { Discriminator, Generator }

/// <summary>One update of the schedule: iteration (0-based), phase, and the D sub-step (0..k-1; 0 for G).</summary>
public readonly record struct StepId(long Iteration, Phase Phase, int SubStep)
{
    public override string ToString() => Phase == Phase.Discriminator ? $"it{Iteration}/D{SubStep}" : $"it{Iteration}/G";
}

/// <summary>
/// Goodfellow et al. 2014, Algorithm 1: each iteration is k discriminator updates, then one generator update.
/// Pure: the local trainer and the cluster coordinator both walk it.
/// </summary>
public static class GanSchedule
{
    public static StepId First => new(0, Phase.Discriminator, 0);

    public static StepId Next(StepId step, int k)
    {
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), k, "k must be at least 1");
        return step.Phase switch
        {
            Phase.Discriminator when step.SubStep + 1 < k => step with { SubStep = step.SubStep + 1 },
            Phase.Discriminator => new StepId(step.Iteration, Phase.Generator, 0),
            _ => new StepId(step.Iteration + 1, Phase.Discriminator, 0),
        };
    }

    /// <summary>The updates of one iteration, in order: D0 … D(k-1), G.</summary>
    public static IEnumerable<StepId> Iteration(long iteration, int k)
    {
        for (var s = 0; s < k; s++) yield return new StepId(iteration, Phase.Discriminator, s);
        yield return new StepId(iteration, Phase.Generator, 0);
    }
}
