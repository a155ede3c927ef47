using System.Net;
using System.Runtime.InteropServices;

namespace GanCluster.DataPlane.Tests;

public sealed class AllReduceTests
{
    // Not multiples of n (except by accident of 0/1), and one large enough for several 1 MiB pipeline blocks per chunk.
    // Around the calling-thread path's limit: 2 × InlineStepBytes of floats is the largest buffer a ring of 2 sums
    // without its sender thread; 2 floats more take the pipeline (and every n > 2 splits both into smaller chunks).
    static readonly int[] Lengths = [0, 1, 7, 1000, 2 * RingAllReduce.InlineStepBytes / sizeof(float), 2 * RingAllReduce.InlineStepBytes / sizeof(float) + 2,
        100_003, 1_000_003];

    static float[] Input(int rank, int length)
    {
        var random = new Random(1234 + rank * 7919 + length);
        var x = new float[length];
        for (var i = 0; i < length; i++)
            x[i] = (float)(random.NextDouble() * 2 - 1) * (1 + rank);
        return x;
    }

    static void AssertBitIdentical(float[][] results)
    {
        for (var r = 1; r < results.Length; r++)
            Assert.True(MemoryMarshal.AsBytes(results[0].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(results[r].AsSpan())),
                $"rank {r} differs from rank 0");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void SumMatchesDoubleReferenceAndIsBitIdentical(int n)
    {
        using var ring = Ring.Create(n);
        foreach (var length in Lengths)
        {
            var inputs = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
            var data = inputs.Select(x => (float[])x.Clone()).ToArray();
            ring.Run((rank, r) => rank.AllReduceSum(data[r]));

            for (var i = 0; i < length; i++)
            {
                double expected = 0, magnitude = 0;
                for (var r = 0; r < n; r++)
                {
                    expected += inputs[r][i];
                    magnitude += Math.Abs(inputs[r][i]);
                }
                Assert.True(Math.Abs(data[0][i] - expected) <= 1e-5 * Math.Max(magnitude, 1e-3),
                    $"n={n} length={length} i={i}: got {data[0][i]}, expected {expected}");
            }
            AssertBitIdentical(data);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void WeightedMeanMatchesDoubleReferenceAndIsBitIdentical(int n)
    {
        using var ring = Ring.Create(n);
        // Unequal weights, one of them zero when n > 2 (a worker that contributed no samples).
        var weights = Enumerable.Range(0, n).Select(r => n > 2 && r == 1 ? 0.0 : 0.5 + r * 1.25).ToArray();
        var totalWeight = weights.Sum();
        foreach (var length in Lengths)
        {
            var inputs = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
            var data = inputs.Select(x => (float[])x.Clone()).ToArray();
            var totals = new double[n];
            ring.Run((rank, r) => totals[r] = rank.AllReduceWeightedMean(data[r], weights[r]));

            Assert.All(totals, t => Assert.Equal(totalWeight, t, 12));
            Assert.All(totals, t => Assert.Equal(BitConverter.DoubleToInt64Bits(totals[0]), BitConverter.DoubleToInt64Bits(t)));
            for (var i = 0; i < length; i++)
            {
                double expected = 0, magnitude = 0;
                for (var r = 0; r < n; r++)
                {
                    expected += weights[r] * inputs[r][i];
                    magnitude += weights[r] * Math.Abs(inputs[r][i]);
                }
                expected /= totalWeight;
                magnitude /= totalWeight;
                Assert.True(Math.Abs(data[0][i] - expected) <= 1e-5 * Math.Max(magnitude, 1e-3),
                    $"n={n} length={length} i={i}: got {data[0][i]}, expected {expected}");
            }
            AssertBitIdentical(data);
        }
    }

    /// <summary>
    /// A step sent from the calling thread is the same single block on the wire as one from the sender thread, so
    /// ranks may differ in the limit: here every other rank sends every step through its sender thread, in the clear
    /// and encrypted, with steps of exactly one block (the largest the calling thread sends) and just over it.
    /// </summary>
    [Theory]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    public void RanksThatSendFromDifferentThreadsAgree(int n, bool encrypt)
    {
        var secret = new byte[32];
        Random.Shared.NextBytes(secret);
        using var ring = Ring.Create(n, inlineStepBytes: r => r % 2 == 0 ? RingAllReduce.InlineStepBytes : 0,
            security: encrypt ? _ => RingSecurity.FromSecret(secret, encrypt: true) : null);
        foreach (var length in new[] { n * RingAllReduce.BlockBytes / sizeof(float), n * RingAllReduce.BlockBytes / sizeof(float) + n, 1000 })
        {
            var inputs = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
            var data = inputs.Select(x => (float[])x.Clone()).ToArray();
            ring.Run((rank, r) => rank.AllReduceSum(data[r]));
            for (var i = 0; i < length; i += 997)
            {
                var expected = Enumerable.Range(0, n).Sum(r => (double)inputs[r][i]);
                Assert.True(Math.Abs(data[0][i] - expected) <= 1e-4, $"n={n} length={length} i={i}: got {data[0][i]}, expected {expected}");
            }
            AssertBitIdentical(data);
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(RingAllReduce.BlockBytes + 1)]
    public void ALimitForTheCallingThreadOverOneBlockIsRefused(int inlineStepBytes)
    {
        using var listener = RingListener.Start(IPAddress.Loopback);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => RingAllReduce.Connect(listener, 7, 0,
            [new RingPeer(0, "127.0.0.1", listener.Port)], TimeSpan.FromSeconds(1), inlineStepBytes: inlineStepBytes));
        Assert.Equal("inlineStepBytes", e.ParamName);
    }

    [Fact]
    public void SingleRankIsANoOp()
    {
        using var listener = RingListener.Start(IPAddress.Loopback);
        using var ring = RingAllReduce.Connect(listener, 7, 0, [new RingPeer(0, "127.0.0.1", listener.Port)], TimeSpan.FromSeconds(1));
        var data = new float[] { 1.5f, -2f, 3.25f };
        ring.AllReduceSum(data);
        Assert.Equal([1.5f, -2f, 3.25f], data);
        Assert.Equal(4.0, ring.AllReduceWeightedMean(data, 4.0));
        Assert.Equal([1.5f, -2f, 3.25f], data);
        Assert.Equal(0, ring.BytesSent);
        Assert.Equal(0, ring.BytesReceived);
    }

    [Fact]
    public void AllZeroWeightsGiveZeros()
    {
        using var ring = Ring.Create(2);
        var data = new[] { new float[] { 1, 2, 3 }, new float[] { 4, 5, 6 } };
        var totals = new double[2];
        ring.Run((rank, r) => totals[r] = rank.AllReduceWeightedMean(data[r], 0));
        Assert.Equal([0.0, 0.0], totals);
        Assert.All(data, d => Assert.Equal([0f, 0f, 0f], d));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void BytesPerRankAre2NMinus1OverNTimesSizeAndDoNotGrowWithN(int n)
    {
        const int length = 100_003;
        const long size = length * sizeof(float);
        using var ring = Ring.Create(n);
        var data = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
        ring.Run((rank, r) => rank.AllReduceSum(data[r]));
        ring.Run((rank, r) => rank.AllReduceSum(data[r]));

        var ideal = 2.0 * (n - 1) / n * size;
        // One header per step, and chunks that differ by at most one float from S/n.
        double slack = 2 * (n - 1) * (RingAllReduce.FrameHeaderBytes + sizeof(float));
        foreach (var rank in ring.Ranks)
        {
            Assert.InRange(rank.LastBytesSent, ideal - slack, ideal + slack);
            Assert.InRange(rank.LastBytesReceived, ideal - slack, ideal + slack);
            Assert.Equal(2 * rank.LastBytesSent, rank.BytesSent);
            Assert.Equal(2 * rank.LastBytesReceived, rank.BytesReceived);
            // Bounded by 2·S whatever n is: the ring's traffic per process does not grow with the worker count.
            Assert.True(rank.LastBytesSent < 2 * size + 2 * (n - 1) * RingAllReduce.FrameHeaderBytes);
        }
        Assert.Equal(ring.Ranks.Sum(r => r.LastBytesSent), ring.Ranks.Sum(r => r.LastBytesReceived));
    }

    [Fact]
    public void RepeatedOperationsStayInStep()
    {
        using var ring = Ring.Create(3);
        var data = new float[3][];
        for (var iteration = 0; iteration < 50; iteration++)
        {
            for (var r = 0; r < 3; r++)
                data[r] = Enumerable.Repeat((float)(r + iteration), 1001).ToArray();
            ring.Run((rank, r) =>
            {
                if (iteration % 2 == 0)
                    rank.AllReduceSum(data[r]);
                else
                    rank.AllReduceWeightedMean(data[r], 1.0);
            });
            var expected = iteration % 2 == 0 ? 3 + 3 * iteration : (3 + 3 * iteration) / 3f;
            Assert.All(data, d => Assert.All(d, v => Assert.Equal(expected, v, 4)));
        }
    }
}
