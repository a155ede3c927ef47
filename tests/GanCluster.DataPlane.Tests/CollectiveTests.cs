using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace GanCluster.DataPlane.Tests;

/// <summary>n members of one <see cref="ICollective"/> group of a given backend, each rank on its own thread.</summary>
sealed class CollectiveGroup : IDisposable
{
    public const string RingPlain = "ring";
    public const string RingEncrypted = "ring-encrypted";
    public const string InProcess = "in-process";

    static readonly byte[] Secret = RandomNumberGenerator.GetBytes(32);

    readonly IDisposable? _ring;

    CollectiveGroup(ICollective[] members, IDisposable? ring)
    {
        Members = members;
        _ring = ring;
    }

    public ICollective[] Members { get; }

    public static CollectiveGroup Create(string backend, int n, TimeSpan? timeout = null)
    {
        if (backend == InProcess)
            return new CollectiveGroup(InProcessCollective.Create(n, timeout), null);
        var ring = Ring.Create(n, timeout, security: backend == RingEncrypted ? _ => RingSecurity.FromSecret(Secret, encrypt: true) : null);
        Assert.All(ring.Ranks, r => Assert.Equal(backend == RingEncrypted, r.Encrypted));
        return new CollectiveGroup(ring.Ranks, ring);
    }

    public T[] Run<T>(Func<ICollective, int, T> body) => Ring.OnAllRanks(Members.Length, r => body(Members[r], r));

    /// <summary>Runs one body per rank and returns what each threw (null: nothing).</summary>
    public Exception?[] RunCatching(Action<ICollective, int> body) =>
        Run<Exception?>((member, r) =>
        {
            try
            {
                body(member, r);
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        });

    public void Dispose()
    {
        if (_ring != null)
            _ring.Dispose();
        else
            foreach (var m in Members)
                m.Dispose();
    }
}

/// <summary>The <see cref="ICollective"/> contract, held by the TCP ring (plain and encrypted) and the in-process group alike.</summary>
public sealed class CollectiveTests
{
    public static TheoryData<string> Backends => [CollectiveGroup.RingPlain, CollectiveGroup.RingEncrypted, CollectiveGroup.InProcess];

    public static TheoryData<string, int> BackendsAndSizes => new()
    {
        { CollectiveGroup.RingPlain, 2 }, { CollectiveGroup.RingPlain, 3 },
        { CollectiveGroup.RingEncrypted, 3 },
        { CollectiveGroup.InProcess, 2 }, { CollectiveGroup.InProcess, 3 }, { CollectiveGroup.InProcess, 5 },
    };

    static float[] Input(int rank, int length, bool positive = false)
    {
        var random = new Random(2468 + rank * 7919 + length);
        var x = new float[length];
        for (var i = 0; i < length; i++)
            x[i] = (float)(positive ? 0.5 + random.NextDouble() : random.NextDouble() * 2 - 1) * (1 + rank);
        return x;
    }

    static bool SameBits(float[] a, float[] b) => MemoryMarshal.AsBytes(a.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(b.AsSpan()));

    static void AssertMean(float[][] inputs, double[] weights, float[] got)
    {
        var total = weights.Sum();
        for (var i = 0; i < got.Length; i++)
        {
            double expected = 0, magnitude = 0;
            for (var r = 0; r < inputs.Length; r++)
            {
                expected += weights[r] * inputs[r][i];
                magnitude += weights[r] * Math.Abs(inputs[r][i]);
            }
            Assert.True(Math.Abs(got[i] - expected / total) <= 1e-5 * Math.Max(magnitude / total, 1e-3),
                $"i={i}: got {got[i]}, expected {expected / total}");
        }
    }

    [Theory]
    [MemberData(nameof(BackendsAndSizes))]
    public void Equal_tags_give_the_weighted_mean_bit_identical_on_every_rank(string backend, int n)
    {
        // Several 1 MiB ring blocks and a length that is not a multiple of n; one weight 0 when n > 2.
        const int length = 300_007;
        using var group = CollectiveGroup.Create(backend, n);
        var weights = Enumerable.Range(0, n).Select(r => n > 2 && r == 1 ? 0.0 : 0.75 + r).ToArray();
        var inputs = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
        var data = inputs.Select(x => (float[])x.Clone()).ToArray();

        var outcomes = group.Run((c, r) => c.AllReduceMean(data[r], weights[r], tag: 41));

        Assert.All(outcomes, o => Assert.Equal(new ReduceOutcome(weights.Sum(), 0), o));
        AssertMean(inputs, weights, data[0]);
        for (var r = 1; r < n; r++)
            Assert.True(SameBits(data[0], data[r]), $"rank {r} differs from rank 0");
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void A_rank_with_another_tag_fails_the_operation_on_every_rank_naming_both_tags(string backend)
    {
        using var group = CollectiveGroup.Create(backend, 3);
        var errors = group.RunCatching((c, r) => c.AllReduceMean(new float[1000], 1.0, tag: r == 1 ? 1_000_008 : 1_000_007));

        for (var r = 0; r < 3; r++)
        {
            var e = Assert.IsType<AllReduceException>(errors[r]);
            Assert.Contains("tag 1000007", e.Message);
            Assert.Contains("tag 1000008", e.Message);
        }
        // The group is unusable afterwards, as after any failure.
        var later = group.RunCatching((c, _) => c.AllGather(1));
        Assert.All(later, e => Assert.IsType<AllReduceException>(e));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Flags_are_ored_over_every_rank(string backend)
    {
        using var group = CollectiveGroup.Create(backend, 3);
        var outcomes = group.Run((c, r) => c.AllReduceMean(new float[] { r, 2 * r }, 1.0, tag: 5, flags: r == 1 ? 0b10 : 0));
        Assert.All(outcomes, o => Assert.Equal(0b10, o.Flags));
        Assert.All(outcomes, o => Assert.Equal(3.0, o.TotalWeight));

        outcomes = group.Run((c, r) => c.AllReduceMean(new float[] { r, 2 * r }, 1.0, tag: 6, flags: r == 1 ? 0 : 1 << (r + 3)));
        Assert.All(outcomes, o => Assert.Equal((1 << 3) | (1 << 5), o.Flags));
        outcomes = group.Run((c, r) => c.AllReduceMean(new float[] { r, 2 * r }, 1.0, tag: 7, flags: int.MinValue));
        Assert.All(outcomes, o => Assert.Equal(int.MinValue, o.Flags));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void AllGather_returns_every_rank_value_in_rank_order_with_its_bits(string backend)
    {
        var values = new[] { -0.0, BitConverter.Int64BitsToDouble(0x7FF8_0000_0000_1234), 1.5e-310, -2.25 };
        using var group = CollectiveGroup.Create(backend, values.Length);
        var gathered = group.Run((c, r) => c.AllGather(values[r]));
        Assert.All(gathered, g => Assert.Equal(
            values.Select(BitConverter.DoubleToInt64Bits), g.Select(BitConverter.DoubleToInt64Bits)));
        // Again, to see the operations stay in step.
        gathered = group.Run((c, r) => c.AllGather(r));
        Assert.All(gathered, g => Assert.Equal([0.0, 1, 2, 3], g));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void World_size_1_leaves_the_data_bit_identical_and_returns_the_weight(string backend)
    {
        using var group = CollectiveGroup.Create(backend, 1);
        var c = group.Members[0];
        Assert.Equal((0, 1), (c.Rank, c.WorldSize));
        // Values that any scaling or round trip could change: a NaN payload, −0, a subnormal, an odd mantissa.
        float[] original = [BitConverter.Int32BitsToSingle(0x7FC0_4321), -0f, float.Epsilon, 1.0000001f, 3e38f];
        var data = (float[])original.Clone();

        Assert.Equal(new ReduceOutcome(0.3, 0b101), c.AllReduceMean(data, 0.3, tag: 99, flags: 0b101));
        Assert.True(SameBits(original, data));
        Assert.Equal(new ReduceOutcome(1e300, 0), c.AllReduceMean(data, 1e300));
        Assert.True(SameBits(original, data));
        c.Broadcast(data);
        Assert.True(SameBits(original, data));
        Assert.Equal([7.5], c.AllGather(7.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.AllReduceMean(data, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => c.AllReduceMean(data, double.NaN));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void Broadcast_gives_rank_0s_bits_and_mixed_operations_stay_in_step(string backend)
    {
        using var group = CollectiveGroup.Create(backend, 3);
        for (var iteration = 0; iteration < 12; iteration++)
        {
            var data = Enumerable.Range(0, 3).Select(r => Input(r + iteration, 1001)).ToArray();
            var root = (float[])data[0].Clone();
            group.Run((c, r) =>
            {
                c.Broadcast(data[r]);
                return 0;
            });
            Assert.All(data, d => Assert.True(SameBits(root, d)));

            var it = iteration;
            var outcomes = group.Run((c, r) => c.AllReduceMean(data[r], 1 + r, tag: it, flags: it == r ? 1 : 0));
            Assert.All(outcomes, o => Assert.Equal(new ReduceOutcome(6, iteration < 3 ? 1 : 0), o));
            // Every rank held rank 0's data, so the mean is that data again (up to rounding of the factors).
            Assert.All(data, d => Assert.True(Math.Abs(d[17] - root[17]) <= 1e-5 * Math.Max(1, Math.Abs(root[17])), $"{d[17]} vs {root[17]}"));
            var gathered = group.Run((c, r) => c.AllGather(it * 10 + r));
            Assert.All(gathered, g => Assert.Equal([it * 10.0, it * 10.0 + 1, it * 10.0 + 2], g));
        }
    }

    [Fact]
    public void The_in_process_and_ring_backends_agree()
    {
        const int n = 3, length = 200_003;
        var weights = new[] { 2.0, 0.5, 1.25 };
        var inputs = Enumerable.Range(0, n).Select(r => Input(r, length, positive: true)).ToArray();

        (float[][] Data, ReduceOutcome[] Outcomes) Run(string backend)
        {
            using var group = CollectiveGroup.Create(backend, n);
            var data = inputs.Select(x => (float[])x.Clone()).ToArray();
            var outcomes = group.Run((c, r) => c.AllReduceMean(data[r], weights[r], tag: 3, flags: 1 << r));
            return (data, outcomes);
        }

        var ring = Run(CollectiveGroup.RingPlain);
        var local = Run(CollectiveGroup.InProcess);
        Assert.Equal(ring.Outcomes, local.Outcomes);
        Assert.All(local.Outcomes, o => Assert.Equal(new ReduceOutcome(3.75, 0b111), o));
        AssertMean(inputs, weights, local.Data[0]);
        for (var i = 0; i < length; i++)
            Assert.True(Math.Abs(ring.Data[0][i] - local.Data[0][i]) <= 1e-6 * Math.Abs(ring.Data[0][i]),
                $"i={i}: ring {ring.Data[0][i]}, in-process {local.Data[0][i]}");
    }

    [Fact]
    public void Disposing_an_in_process_member_fails_the_others_pending_operation_promptly()
    {
        var members = InProcessCollective.Create(3, TimeSpan.FromSeconds(30));
        var clock = Stopwatch.StartNew();
        var pending = Enumerable.Range(0, 2).Select(r => Task.Factory.StartNew(
            () => members[r].AllReduceMean(new float[10], 1, tag: 1), CancellationToken.None,
            TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        // Both are blocked waiting for rank 2 before it leaves.
        Assert.True(SpinWait.SpinUntil(() => members[0].Waiting == 2, TimeSpan.FromSeconds(10)), "ranks 0 and 1 never waited");
        members[2].Dispose();

        foreach (var task in pending)
        {
            var e = Assert.IsType<AllReduceException>(Assert.ThrowsAny<AggregateException>(() => task.Wait(TimeSpan.FromSeconds(10))).InnerException);
            Assert.Contains("rank 2 left the group", e.Message);
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed} (the timeout is 30 s)");
        // Later operations fail at once; the disposed member itself is disposed.
        Assert.Throws<AllReduceException>(() => members[0].AllGather(1));
        Assert.Throws<AllReduceException>(() => members[1].Broadcast(new float[3]));
        Assert.Throws<ObjectDisposedException>(() => members[2].AllGather(1));
        foreach (var m in members)
            m.Dispose();
    }

    [Fact]
    public void An_in_process_rank_that_never_arrives_fails_the_others_after_the_timeout()
    {
        // Long enough that rank 1's thread has arrived before rank 0 gives up, however busy the machine.
        var members = InProcessCollective.Create(3, TimeSpan.FromSeconds(3));
        var errors = Ring.OnAllRanks(2, r => Record.Exception(() => members[r].AllGather(r)));
        Assert.All(errors, e => Assert.Contains("rank(s) 2 did not arrive", Assert.IsType<AllReduceException>(e).Message));
        // The late rank finds the group failed instead of waiting for the others' next operation.
        Assert.IsType<AllReduceException>(Record.Exception(() => members[2].AllGather(2)));
        foreach (var m in members)
            m.Dispose();
    }

    [Fact]
    public void In_process_ranks_that_make_different_calls_all_fail()
    {
        using var group = CollectiveGroup.Create(CollectiveGroup.InProcess, 2);
        var errors = group.RunCatching((c, r) =>
        {
            if (r == 0)
                c.AllGather(1);
            else
                c.Broadcast(new float[4]);
        });
        Assert.All(errors, e => Assert.Contains("rank 1 called Broadcast with length 4", Assert.IsType<AllReduceException>(e).Message));

        using var lengths = CollectiveGroup.Create(CollectiveGroup.InProcess, 2);
        errors = lengths.RunCatching((c, r) => c.AllReduceMean(new float[10 + r], 1));
        Assert.All(errors, e => Assert.Contains("length 11", Assert.IsType<AllReduceException>(e).Message));
    }

    [Fact]
    public void A_ring_rank_in_AllGather_while_the_other_reduces_fails_the_header_check()
    {
        using var group = CollectiveGroup.Create(CollectiveGroup.RingPlain, 2, TimeSpan.FromSeconds(5));
        var errors = group.RunCatching((c, r) =>
        {
            if (r == 0)
                c.AllGather(1);
            else
                c.AllReduceMean(new float[1], 1);
        });
        Assert.All(errors, e => Assert.Contains("mismatched frame", Assert.IsType<AllReduceException>(e).Message));
    }

    [Fact]
    public void The_ring_records_cost_one_small_frame_per_step()
    {
        using var group = CollectiveGroup.Create(CollectiveGroup.RingPlain, 3);
        group.Run((c, _) => c.AllGather(1));
        var frame = RingAllReduce.FrameHeaderBytes + RingAllReduce.RecordBytes;
        Assert.All(group.Members, c => Assert.Equal(2 * frame, ((RingAllReduce)c).LastBytesSent));
        // Weight, tag, flags and the sender's wire format.
        Assert.Equal(24, RingAllReduce.RecordBytes);
    }
}
