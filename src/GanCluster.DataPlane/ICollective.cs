namespace GanCluster.DataPlane;

/// <summary>What every rank learns from one all-reduce: Σ w_r, and the OR of every rank's flags.</summary>
public readonly record struct ReduceOutcome(double TotalWeight, int Flags);

/// <summary>
/// One group of ranks (as PyTorch's c10d ProcessGroup): every rank makes the same sequence of calls, one at a time per
/// member. Backends: <see cref="RingAllReduce"/> (TCP, one process per rank) and <see cref="InProcessCollective"/>
/// (threads of one process). After an operation throws <see cref="AllReduceException"/> the group is unusable: every
/// later operation throws it too (build a new group).
/// </summary>
public interface ICollective : IDisposable
{
    int Rank { get; }

    int WorldSize { get; }

    /// <summary>
    /// Leaves Σ_r w_r·x_r / Σ_r w_r in <paramref name="data"/> on every rank, bit-identical on every rank (all zeros
    /// when every weight is 0), and returns Σ_r w_r (summed in double in rank order) with the OR of every rank's
    /// <paramref name="flags"/>. Every rank must pass the same <paramref name="tag"/> (the caller's step key) and the
    /// same length; a rank that passes another tag fails the operation on every rank with an
    /// <see cref="AllReduceException"/> naming both tags. World size 1: <paramref name="data"/> is left untouched
    /// when <paramref name="weight"/> &gt; 0 and the outcome is (<paramref name="weight"/>, <paramref name="flags"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The weight is negative or not finite (nothing was sent).</exception>
    /// <exception cref="AllReduceException">
    /// Tags differ, a peer failed, left or went silent past the timeout, or the ranks' calls do not match;
    /// <paramref name="data"/> is then unspecified.
    /// </exception>
    ReduceOutcome AllReduceMean(Span<float> data, double weight, long tag = 0, int flags = 0);

    /// <summary>Rank 0's <paramref name="data"/> (its exact bits) on every rank; every rank passes the same length.</summary>
    /// <exception cref="AllReduceException">As for <see cref="AllReduceMean"/>.</exception>
    void Broadcast(Span<float> data);

    /// <summary>Every rank's <paramref name="value"/> (its exact bits), in rank order, on every rank.</summary>
    /// <exception cref="AllReduceException">As for <see cref="AllReduceMean"/>.</exception>
    double[] AllGather(double value);
}

/// <summary>Checks both backends share, so that they fail with the same words.</summary>
static class CollectiveChecks
{
    public static void CheckWeight(double weight)
    {
        if (!double.IsFinite(weight) || weight < 0)
            throw new ArgumentOutOfRangeException(nameof(weight), weight, "The weight must be finite and non-negative.");
    }

    /// <summary>
    /// Null when every rank passed rank 0's tag; else names rank 0's tag and the first other one. Every rank sees the
    /// same tags, so every rank reports the same pair.
    /// </summary>
    public static string? TagMismatch(ReadOnlySpan<long> tags)
    {
        for (var r = 1; r < tags.Length; r++)
            if (tags[r] != tags[0])
                return $"the ranks passed different tags: rank 0 passed tag {tags[0]}, rank {r} passed tag {tags[r]}";
        return null;
    }

    /// <summary>Σ w_r in rank order and the OR of the flags: the same arithmetic on every rank.</summary>
    public static ReduceOutcome Combine(ReadOnlySpan<double> weights, ReadOnlySpan<int> flags)
    {
        double total = 0;
        var all = 0;
        for (var r = 0; r < weights.Length; r++)
        {
            total += weights[r];
            all |= flags[r];
        }
        return new ReduceOutcome(total, all);
    }

    /// <summary>Each rank's share of the mean, as a float factor (1 leaves the data as it is).</summary>
    public static float Factor(double weight, double total) => total > 0 ? (float)(weight / total) : 0f;
}
