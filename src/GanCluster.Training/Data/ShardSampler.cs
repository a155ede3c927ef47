namespace GanCluster.Training.Data;

/// <summary>
/// Splits a dataset among <see cref="WorldSize"/> workers the way PyTorch's DistributedSampler does: every epoch
/// all ranks compute the same permutation of 0..N-1 from (seed, epoch), pad it by wrapping around from its start
/// to <see cref="ShardSize"/>·W entries, and rank r takes positions r, r+W, r+2W, ... Shards are equal-sized,
/// together cover every index, and are disjoint when N is a multiple of W (otherwise only the padding repeats).
/// </summary>
public sealed class ShardSampler
{
    public ShardSampler(int datasetSize, int rank, int worldSize, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(datasetSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, worldSize);
        DatasetSize = datasetSize;
        Rank = rank;
        WorldSize = worldSize;
        Seed = seed;
        ShardSize = (int)(((long)datasetSize + worldSize - 1) / worldSize);
    }

    public int DatasetSize { get; }
    public int Rank { get; }
    public int WorldSize { get; }
    public long Seed { get; }

    /// <summary>Indices per rank per epoch: ceil(N / W).</summary>
    public int ShardSize { get; }

    /// <summary>The epoch's permutation of 0..N-1, identical on every rank.</summary>
    public int[] Permutation(long epoch)
    {
        var perm = new int[DatasetSize];
        for (var i = 0; i < perm.Length; i++) perm[i] = i;
        new DeterministicRandom(DeterministicRandom.Mix(Seed, epoch)).Shuffle(perm);
        return perm;
    }

    /// <summary>This rank's <see cref="ShardSize"/> dataset indices for <paramref name="epoch"/>, in visiting order.</summary>
    public int[] EpochIndices(long epoch)
    {
        var perm = Permutation(epoch);
        var shard = new int[ShardSize];
        for (var k = 0; k < shard.Length; k++)
        {
            // Position in the padded list; positions past N wrap to the start of the permutation.
            var position = (long)Rank + (long)k * WorldSize;
            shard[k] = perm[(int)(position % DatasetSize)];
        }
        return shard;
    }
}

/// <summary>
/// Walks one rank's shard batch by batch, moving on to the next epoch's permutation when the shard runs out
/// (a batch may straddle two epochs). (<see cref="Epoch"/>, <see cref="Offset"/>) is the whole position:
/// checkpoint them and build a new cursor with them to continue identically.
/// </summary>
public sealed class BatchCursor
{
    readonly ShardSampler _sampler;
    int[] _indices;

    public BatchCursor(ShardSampler sampler, long epoch = 0, int offset = 0)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, sampler.ShardSize);
        _sampler = sampler;
        if (offset == sampler.ShardSize)
        {
            // The end of an epoch's shard is the start of the next one.
            epoch++;
            offset = 0;
        }
        Epoch = epoch;
        Offset = offset;
        _indices = sampler.EpochIndices(epoch);
    }

    public ShardSampler Sampler => _sampler;

    /// <summary>The epoch the next index comes from.</summary>
    public long Epoch { get; private set; }

    /// <summary>Position of the next index within <see cref="Epoch"/>'s shard, 0 ≤ Offset &lt; ShardSize.</summary>
    public int Offset { get; private set; }

    /// <summary>The next <paramref name="batchSize"/> dataset indices of this rank's stream.</summary>
    public int[] Next(int batchSize)
    {
        var batch = new int[batchSize];
        var filled = 0;
        foreach (var s in NextSegments(batchSize))
        {
            Array.Copy(s.EpochIndices, s.Offset, batch, filled, s.Count);
            filled += s.Count;
        }
        return batch;
    }

    /// <summary>
    /// The next <paramref name="batchSize"/> indices as runs of an epoch's index array (one, or more when the batch
    /// straddles epochs): a GPU run uploads each epoch's array once and slices it, instead of uploading every batch.
    /// </summary>
    public IReadOnlyList<BatchSegment> NextSegments(int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var segments = new List<BatchSegment>(1);
        var filled = 0;
        while (filled < batchSize)
        {
            var take = Math.Min(batchSize - filled, _indices.Length - Offset);
            segments.Add(new BatchSegment(Epoch, _indices, Offset, take));
            filled += take;
            Offset += take;
            if (Offset == _indices.Length)
            {
                Epoch++;
                Offset = 0;
                _indices = _sampler.EpochIndices(Epoch);
            }
        }
        return segments;
    }
}

/// <summary><paramref name="Count"/> indices from <paramref name="Offset"/> of <paramref name="Epoch"/>'s index array.</summary>
public sealed record BatchSegment(long Epoch, int[] EpochIndices, int Offset, int Count);
