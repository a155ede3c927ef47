using GanCluster.Training.Data;

namespace GanCluster.Training.Tests.Data;

public sealed class ShardSamplerTests
{
    public static TheoryData<int, int> Sizes()
    {
        var data = new TheoryData<int, int>();
        foreach (var n in new[] { 10, 12, 101 })
            foreach (var w in new[] { 1, 2, 3, 4 })
                data.Add(n, w);
        return data;
    }

    static int[][] Shards(int n, int w, long seed, long epoch) =>
        Enumerable.Range(0, w).Select(r => new ShardSampler(n, r, w, seed).EpochIndices(epoch)).ToArray();

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Shards_are_equal_sized_cover_everything_and_only_padding_repeats(int n, int w)
    {
        var shards = Shards(n, w, seed: 5, epoch: 0);
        var shardSize = (n + w - 1) / w;
        Assert.All(shards, s => Assert.Equal(shardSize, s.Length));
        Assert.Equal(shardSize, new ShardSampler(n, 0, w, 5).ShardSize);

        var all = shards.SelectMany(s => s).ToArray();
        Assert.All(all, i => Assert.InRange(i, 0, n - 1));
        Assert.Equal(Enumerable.Range(0, n), all.Distinct().Order());

        var repeats = all.Length - all.Distinct().Count();
        Assert.Equal(shardSize * w - n, repeats);
        if (n % w == 0)
        {
            Assert.Equal(0, repeats);
            for (var a = 0; a < w; a++)
                for (var b = a + 1; b < w; b++)
                    Assert.Empty(shards[a].Intersect(shards[b]));
        }
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Shards_interleave_one_shared_permutation(int n, int w)
    {
        var shards = Shards(n, w, seed: 9, epoch: 3);
        var perm = new ShardSampler(n, 0, w, 9).Permutation(3);
        for (var r = 0; r < w; r++)
            for (var k = 0; k < shards[r].Length; k++)
                Assert.Equal(perm[(r + k * w) % n], shards[r][k]);
    }

    [Fact]
    public void Same_seed_and_epoch_is_deterministic_and_epochs_differ()
    {
        var a = new ShardSampler(101, 1, 3, 42);
        var b = new ShardSampler(101, 1, 3, 42);
        Assert.Equal(a.EpochIndices(0), b.EpochIndices(0));
        Assert.Equal(a.EpochIndices(7), b.EpochIndices(7));
        Assert.NotEqual(a.EpochIndices(0), a.EpochIndices(1));
        Assert.NotEqual(a.Permutation(0), a.Permutation(1));
        Assert.NotEqual(a.EpochIndices(0), new ShardSampler(101, 1, 3, 43).EpochIndices(0));
        // A real shuffle, not the identity.
        Assert.NotEqual(Enumerable.Range(0, 101), a.Permutation(0));
    }

    [Fact]
    public void Small_dataset_with_more_ranks_than_samples_still_works()
    {
        var shards = Shards(3, 5, seed: 1, epoch: 0);
        Assert.All(shards, s => Assert.Single(s));
        Assert.Equal(new[] { 0, 1, 2 }, shards.SelectMany(s => s).Distinct().Order());
    }

    [Fact]
    public void Invalid_arguments_name_the_parameter()
    {
        Assert.Equal("datasetSize", Assert.Throws<ArgumentOutOfRangeException>(() => new ShardSampler(0, 0, 1, 0)).ParamName);
        Assert.Equal("worldSize", Assert.Throws<ArgumentOutOfRangeException>(() => new ShardSampler(10, 0, 0, 0)).ParamName);
        Assert.Equal("rank", Assert.Throws<ArgumentOutOfRangeException>(() => new ShardSampler(10, -1, 2, 0)).ParamName);
        Assert.Equal("rank", Assert.Throws<ArgumentOutOfRangeException>(() => new ShardSampler(10, 2, 2, 0)).ParamName);
    }

    [Theory]
    [InlineData(10, 2, 1, 0, 3)]
    [InlineData(101, 4, 3, 7, 10)]
    [InlineData(12, 3, 0, 2, 4)]
    [InlineData(12, 1, 0, 0, 5)]
    public void Cursor_straddles_the_epoch_boundary(int n, int w, int rank, int offset, int batchSize)
    {
        var sampler = new ShardSampler(n, rank, w, 11);
        var expected = sampler.EpochIndices(0)[offset..].Concat(sampler.EpochIndices(1)).ToArray();
        var cursor = new BatchCursor(sampler, epoch: 0, offset: offset);
        var walked = new List<int>();
        while (walked.Count < expected.Length) walked.AddRange(cursor.Next(batchSize));
        Assert.Equal(expected, walked.Take(expected.Length));
        // Whatever overshoots comes from epoch 2.
        Assert.Equal(sampler.EpochIndices(2)[..(walked.Count - expected.Length)], walked.Skip(expected.Length));
        Assert.Equal(2, cursor.Epoch);
        Assert.Equal(walked.Count - expected.Length, cursor.Offset);
    }

    [Fact]
    public void A_batch_larger_than_the_shard_spans_several_epochs()
    {
        var sampler = new ShardSampler(10, 1, 4, 3); // shard size 3
        var cursor = new BatchCursor(sampler);
        var batch = cursor.Next(8);
        var expected = sampler.EpochIndices(0).Concat(sampler.EpochIndices(1)).Concat(sampler.EpochIndices(2)).Take(8);
        Assert.Equal(expected, batch);
        Assert.Equal(2, cursor.Epoch);
        Assert.Equal(2, cursor.Offset);
    }

    [Fact]
    public void Cursor_rebuilt_from_epoch_and_offset_continues_identically()
    {
        var sampler = new ShardSampler(101, 2, 3, 77);
        var original = new BatchCursor(sampler);
        for (var i = 0; i < 9; i++) original.Next(7);
        var (epoch, offset) = (original.Epoch, original.Offset);

        // A fresh sampler, as after a restart.
        var restored = new BatchCursor(new ShardSampler(101, 2, 3, 77), epoch, offset);
        Assert.Equal(epoch, restored.Epoch);
        Assert.Equal(offset, restored.Offset);
        for (var i = 0; i < 20; i++) Assert.Equal(original.Next(7), restored.Next(7));
    }

    [Fact]
    public void Cursor_at_the_end_of_a_shard_is_the_start_of_the_next_epoch()
    {
        var sampler = new ShardSampler(12, 0, 3, 1); // shard size 4
        var atEnd = new BatchCursor(sampler, epoch: 5, offset: 4);
        Assert.Equal(6, atEnd.Epoch);
        Assert.Equal(0, atEnd.Offset);
        Assert.Equal(sampler.EpochIndices(6)[..2], atEnd.Next(2));

        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCursor(sampler, 0, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCursor(sampler, 0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCursor(sampler, -1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchCursor(sampler).Next(0));
    }
}
