using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace GanCluster.DataPlane.Tests;

/// <summary>A real broadcast from rank 0: every bit of rank 0's buffer on every rank, and half an all-reduce's traffic.</summary>
public sealed class BroadcastTests
{
    /// <summary>Random bits, including NaN payloads, infinities, -0 and subnormals: a broadcast adds nothing, so all survive.</summary>
    static float[] Bits(int length, int seed)
    {
        var bytes = new byte[length * sizeof(float)];
        new Random(seed).NextBytes(bytes);
        var x = MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        if (length >= 4) (x[0], x[1], x[2], x[3]) = (BitConverter.Int32BitsToSingle(0x7FC0_1234), float.NegativeInfinity, -0f, float.Epsilon);
        return x;
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(3, true)]
    public void Every_rank_ends_with_rank_0s_bits(int n, bool encrypt)
    {
        // Several 1 MiB blocks and a partial one.
        const int length = 600_001;
        using var ring = Ring.Create(n, security: encrypt ? _ => RingSecurity.FromSecret(Secret, encrypt: true) : null);
        var buffers = Enumerable.Range(0, n).Select(r => Bits(length, 17 + r)).ToArray();
        var root = (float[])buffers[0].Clone();
        ring.Run((rank, r) => rank.Broadcast(buffers[r]));

        var bytes = (long)length * sizeof(float);
        for (var r = 0; r < n; r++)
        {
            Assert.True(MemoryMarshal.AsBytes(buffers[r].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(root.AsSpan())), $"rank {r} differs from rank 0");
            if (n == 1 || encrypt) continue;
            // A pipeline 0 → 1 → … → n−1: the last rank sends nothing back, rank 0 receives nothing.
            Assert.Equal(r == n - 1 ? 0 : bytes + RingAllReduce.FrameHeaderBytes, ring.Ranks[r].LastBytesSent);
            Assert.Equal(r == 0 ? 0 : bytes + RingAllReduce.FrameHeaderBytes, ring.Ranks[r].LastBytesReceived);
        }
        // The ring still works for all-reduces afterwards.
        var ones = Enumerable.Range(0, n).Select(_ => new float[] { 1, 2 }).ToArray();
        ring.Run((rank, r) => rank.AllReduceSum(ones[r]));
        Assert.All(ones, x => Assert.Equal(new float[] { n, 2 * n }, x));
    }

    static readonly byte[] Secret = RandomNumberGenerator.GetBytes(32);

    [Fact]
    public void Ranks_that_disagree_on_the_length_fail_with_the_header_check()
    {
        using var ring = Ring.Create(2, timeout: TimeSpan.FromSeconds(5));
        var lengths = new[] { 10, 11 };
        var errors = new Exception?[2];
        ring.Run((rank, r) =>
        {
            try { rank.Broadcast(new float[lengths[r]]); }
            catch (AllReduceException e) { errors[r] = e; }
        });
        Assert.IsType<AllReduceException>(errors[1]);
        Assert.Contains("broadcast from rank 0", errors[1]!.Message);
    }
}
