using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace GanCluster.DataPlane.Tests;

/// <summary>The bf16 wire format: its rounding, the ring's results with it, its refusal of mixed formats, its bytes.</summary>
public sealed class Bf16WireTests
{
    static readonly byte[] Secret = RandomNumberGenerator.GetBytes(32);

    static float[] Input(int rank, int length)
    {
        var random = new Random(777 + rank * 7919 + length);
        var x = new float[length];
        for (var i = 0; i < length; i++)
            // Magnitudes over several binades, so the rounding is exercised at many exponents.
            x[i] = (float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-20, 8)));
        return x;
    }

    static uint Bits(float x) => BitConverter.SingleToUInt32Bits(x);

    /// <summary>
    /// bf16 rounding worked out from the values, not the bit trick: the nearer of the two bf16 neighbours of x, the even
    /// one on a tie, ±inf past the largest bf16 by half an ulp or more; NaN is only required to stay NaN.
    /// </summary>
    static float ReferenceBf16(float x)
    {
        if (float.IsNaN(x) || float.IsInfinity(x))
            return x;
        var down = Bits(x) & 0xFFFF0000;                 // toward zero
        var up = down + 0x10000;                        // away from zero (may be ±inf)
        var lower = (double)BitConverter.UInt32BitsToSingle(down);
        var upper = (up & 0x7FFFFFFF) == 0x7F800000
            ? Math.CopySign(Math.Pow(2, 128), x)         // where RNE puts the boundary to infinity
            : BitConverter.UInt32BitsToSingle(up);
        double dLow = Math.Abs(x - lower), dUp = Math.Abs(upper - x);
        var pick = dLow < dUp || (dLow == dUp && (down & 0x10000) == 0) ? down : up;
        return BitConverter.UInt32BitsToSingle(pick);
    }

    static float[] SpecialsAndRandom(int length)
    {
        float[] specials =
        [
            0f, -0f, 1f, -1f, float.Epsilon, -float.Epsilon, float.MaxValue, -float.MaxValue, float.PositiveInfinity,
            float.NegativeInfinity, float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001), // NaN whose payload is all cut off
            BitConverter.UInt32BitsToSingle(0xFF800001), BitConverter.UInt32BitsToSingle(0x7FC00000),
            BitConverter.UInt32BitsToSingle(0x3F808000), // 1 + half a bf16 ulp: tie, stays 1 (even)
            BitConverter.UInt32BitsToSingle(0x3F818000), // tie, rounds up to the even neighbour
            BitConverter.UInt32BitsToSingle(0x3F808001), // just past the tie
            BitConverter.UInt32BitsToSingle(0x7F7F8000), // tie at the top: rounds to inf
            BitConverter.UInt32BitsToSingle(0x7F7F7FFF), // just below: the largest bf16
            BitConverter.UInt32BitsToSingle(0x00018000), // subnormal tie
        ];
        var random = new Random(length);
        var x = new float[length];
        for (var i = 0; i < length; i++)
            x[i] = i < specials.Length ? specials[i] : BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32));
        return x;
    }

    static void AssertSameOrBothNaN(float expected, float actual, string what)
    {
        if (float.IsNaN(expected))
            Assert.True(float.IsNaN(actual), $"{what}: NaN became {actual}");
        else
            Assert.True(Bits(expected) == Bits(actual), $"{what}: expected 0x{Bits(expected):x8} ({expected}), got 0x{Bits(actual):x8} ({actual})");
    }

    // Lengths around the vector widths (tails of every size) and a large one with random bit patterns.
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(33)]
    [InlineData(67)]
    [InlineData(100_003)]
    public void Conversions_round_to_nearest_even_and_keep_non_finite_values(int length)
    {
        var x = SpecialsAndRandom(length);
        var narrow = new ushort[length];
        VectorMath.ToBf16(x, narrow);
        var wide = new float[length];
        VectorMath.FromBf16(narrow, wide);
        var inPlace = (float[])x.Clone();
        VectorMath.RoundToBf16(inPlace);
        for (var i = 0; i < length; i++)
        {
            var expected = ReferenceBf16(x[i]);
            AssertSameOrBothNaN(expected, wide[i], $"ToBf16 of 0x{Bits(x[i]):x8} at {i}");
            Assert.Equal(narrow[i], VectorMath.ToBf16(x[i]));
            Assert.Equal(Bits(wide[i]), Bits(inPlace[i]));
            Assert.Equal(0u, Bits(wide[i]) & 0xFFFF);
        }
    }

    [Theory]
    [InlineData(31, false)]
    [InlineData(31, true)]
    [InlineData(100_003, false)]
    [InlineData(100_003, true)]
    public void AddBf16_adds_in_fp32_and_rounds_only_when_asked(int length, bool round)
    {
        var a = Input(0, length);
        var b = Input(1, length);
        var bf = new ushort[length];
        VectorMath.ToBf16(b, bf);
        var sum = (float[])a.Clone();
        VectorMath.AddBf16(sum, bf, round);
        for (var i = 0; i < length; i++)
        {
            var exact = a[i] + ReferenceBf16(b[i]);
            Assert.Equal(Bits(round ? ReferenceBf16(exact) : exact), Bits(sum[i]));
        }
    }

    public static TheoryData<int, bool, int, int> RingCases()
    {
        var cases = new TheoryData<int, bool, int, int>();
        foreach (var n in new[] { 2, 3 })
        foreach (var encrypt in new[] { false, true })
        {
            // From the calling thread (chunks under one block), then the same through the sender thread, then
            // several pipelined blocks per chunk. None of the lengths is a multiple of n or of a vector.
            cases.Add(n, encrypt, 100_003, RingAllReduce.InlineStepBytes);
            cases.Add(n, encrypt, 100_003, 0);
            cases.Add(n, encrypt, 1_000_003, RingAllReduce.InlineStepBytes);
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(RingCases))]
    public void Bf16_mean_is_within_bf16_tolerance_of_the_exact_mean_and_bit_identical(int n, bool encrypt, int length, int inlineStepBytes)
    {
        using var ring = Ring.Create(n, security: encrypt ? _ => RingSecurity.FromSecret(Secret, encrypt: true) : null,
            inlineStepBytes: _ => inlineStepBytes, wire: _ => RingWire.Bf16);
        Assert.All(ring.Ranks, r => Assert.Equal(RingWire.Bf16, r.WireFormat));
        Assert.All(ring.Ranks, r => Assert.Equal(encrypt, r.Encrypted));
        var inputs = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
        var weights = Enumerable.Range(0, n).Select(r => 1.0 + 0.5 * r).ToArray();
        var data = inputs.Select(x => (float[])x.Clone()).ToArray();
        var totals = new double[n];
        ring.Run((rank, r) => totals[r] = rank.AllReduceMean(data[r], weights[r], tag: 5).TotalWeight);

        Assert.All(totals, t => Assert.Equal(weights.Sum(), t));
        for (var r = 1; r < n; r++)
            Assert.True(MemoryMarshal.AsBytes(data[0].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(data[r].AsSpan())), $"rank {r} differs from rank 0");
        var factors = weights.Select(w => (float)(w / weights.Sum())).ToArray();
        // Each of the n−1 sends rounds a partial sum, and the owner rounds once more: n roundings of at most half a
        // bf16 ulp (2^-8 relative: 8 significant bits) of something no larger than Σ|terms|.
        var unit = Math.Pow(2, -8);
        var lossy = 0;
        for (var i = 0; i < length; i++)
        {
            double exact = 0, magnitude = 0;
            for (var r = 0; r < n; r++)
            {
                var term = (double)(inputs[r][i] * factors[r]);
                exact += term;
                magnitude += Math.Abs(term);
            }
            var got = data[0][i];
            Assert.Equal(0u, Bits(got) & 0xFFFF);
            var error = Math.Abs(got - exact);
            Assert.True(error <= n * unit * magnitude * 1.01 + 1e-37,
                $"element {i}: {got} vs exact {exact} (error {error:g3}, bound {n * unit * magnitude:g3})");
            if (error > 1e-6 * magnitude)
                lossy++;
        }
        // The wire really carried bf16: most results differ from the fp32 mean by more than fp32 rounding would.
        Assert.True(lossy > length / 2, $"only {lossy} of {length} results lost precision: was the bf16 path taken?");
    }

    [Theory]
    [InlineData(2, RingAllReduce.InlineStepBytes)]
    [InlineData(2, 0)]
    [InlineData(3, RingAllReduce.InlineStepBytes)]
    [InlineData(3, 0)]
    public void NaN_and_infinities_survive_the_bf16_ring(int n, int inlineStepBytes)
    {
        const int length = 10_007;
        using var ring = Ring.Create(n, inlineStepBytes: _ => inlineStepBytes, wire: _ => RingWire.Bf16);
        var data = Enumerable.Range(0, n).Select(r => Input(r, length)).ToArray();
        // In different chunks (owned by different ranks for n = 3), each from one rank only.
        int nan = 3, lowNaN = length / 3 + 5, posInf = length / 2 + 1, negInf = length - 2, overflow = length - 9;
        data[0][nan] = float.NaN;
        data[n - 1][lowNaN] = BitConverter.UInt32BitsToSingle(0x7F800001);   // truncation alone would make it inf
        data[1][posInf] = float.PositiveInfinity;
        data[0][negInf] = float.NegativeInfinity;
        // Finite on every rank, but the mean of maximal values still rounds past bf16's largest: inf, as RNE says.
        for (var r = 0; r < n; r++)
            data[r][overflow] = float.MaxValue;
        ring.Run((rank, r) => rank.AllReduceMean(data[r], 1.0));

        for (var r = 0; r < n; r++)
        {
            Assert.True(float.IsNaN(data[r][nan]), $"rank {r}: NaN became {data[r][nan]}");
            Assert.True(float.IsNaN(data[r][lowNaN]), $"rank {r}: the low-payload NaN became {data[r][lowNaN]}");
            Assert.Equal(float.PositiveInfinity, data[r][posInf]);
            Assert.Equal(float.NegativeInfinity, data[r][negInf]);
            Assert.Equal(float.PositiveInfinity, data[r][overflow]);
            Assert.True(MemoryMarshal.AsBytes(data[0].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(data[r].AsSpan())), $"rank {r} differs from rank 0");
        }
        Assert.Equal(length - 5, data[0].Count(float.IsFinite));
    }

    [Theory]
    [InlineData(2, 0)]
    [InlineData(3, 0)]
    [InlineData(3, 2)]
    public void Ranks_formed_with_different_wire_formats_refuse_the_mean_naming_both(int n, int bf16Rank)
    {
        using var ring = Ring.Create(n, TimeSpan.FromSeconds(10), wire: r => r == bf16Rank ? RingWire.Bf16 : RingWire.Fp32);
        var errors = ring.Ranks.Select(_ => (Exception?)null).ToArray();
        var data = Enumerable.Range(0, n).Select(r => Input(r, 1000)).ToArray();
        ring.Run((rank, r) =>
        {
            try
            {
                rank.AllReduceMean(data[r], 1.0);
            }
            catch (Exception e)
            {
                errors[r] = e;
            }
        });
        // Every rank sees every rank's record, so every rank refuses with the same pair, before any data moved.
        var expected = $"different wire formats: rank 0 sends {(bf16Rank == 0 ? "bf16" : "fp32")}, rank {(bf16Rank == 0 ? 1 : bf16Rank)} sends {(bf16Rank == 0 ? "fp32" : "bf16")}";
        for (var r = 0; r < n; r++)
        {
            var e = Assert.IsType<AllReduceException>(errors[r]);
            Assert.Contains(expected, e.Message);
            Assert.Equal(Input(r, 1000), data[r]);
        }
        // The ring is unusable afterwards, as after any failure.
        Assert.Throws<AllReduceException>(() => ring.Ranks[0].AllGather(1));
    }

    [Fact]
    public void A_plain_sum_across_different_wire_formats_fails_the_frame_check_naming_both()
    {
        using var ring = Ring.Create(2, TimeSpan.FromSeconds(10), wire: r => r == 0 ? RingWire.Bf16 : RingWire.Fp32);
        var errors = new Exception?[2];
        ring.Run((rank, r) =>
        {
            try
            {
                rank.AllReduceSum(Input(r, 5000));
            }
            catch (Exception e)
            {
                errors[r] = e;
            }
        });
        Assert.All(errors, e => Assert.IsType<AllReduceException>(e));
        // Whoever reads the other's first frame names both formats (its neighbour may only see the connection close).
        Assert.Contains(errors, e => e!.Message.Contains("different wire formats") && e.Message.Contains("bf16") && e.Message.Contains("fp32"));
    }

    [Fact]
    public void Broadcast_and_AllGather_stay_exact_on_a_bf16_ring()
    {
        using var ring = Ring.Create(3, wire: _ => RingWire.Bf16);
        var weights = Input(0, 3001);
        Assert.Contains(weights, w => (Bits(w) & 0xFFFF) != 0);
        var copies = Enumerable.Range(0, 3).Select(r => r == 0 ? (float[])weights.Clone() : new float[weights.Length]).ToArray();
        ring.Run((rank, r) => rank.Broadcast(copies[r]));
        Assert.All(copies, c => Assert.True(MemoryMarshal.AsBytes(c.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(weights.AsSpan()))));
        var values = new[] { Math.PI, 1.0 / 3, 1e-300 };
        var gathered = new double[3][];
        ring.Run((rank, r) => gathered[r] = rank.AllGather(values[r]));
        Assert.All(gathered, g => Assert.Equal(values, g));
    }

    [Fact]
    public void A_world_of_one_leaves_the_data_untouched()
    {
        using var listener = RingListener.Start(IPAddress.Loopback);
        using var ring = RingAllReduce.Connect(listener, Ring.NewSession(), 0, [new RingPeer(0, "127.0.0.1", listener.Port)],
            TimeSpan.FromSeconds(5), wire: RingWire.Bf16);
        var data = Input(0, 1001);
        var copy = (float[])data.Clone();
        ring.AllReduceMean(data, 2.5);
        Assert.Equal(copy.Select(Bits), data.Select(Bits));
    }

    /// <summary>
    /// What rank 1 sends to rank 0 is captured by a proxy, so the count is the socket's, not the ring's own counter:
    /// the same mean moves exactly half the payload bytes with bf16, with the same framing around it.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_bf16_ring_sends_half_the_payload_bytes(bool encrypt)
    {
        const int length = 1_200_001;   // through the sender thread, 3 blocks per chunk (2.4 MB in fp32)
        long Captured(RingWire wire, out long counted)
        {
            var listeners = Ring.StartListeners(2);
            using var proxy = new TcpProxy(listeners[0].Port);
            RingAllReduce[] ranks = [];
            try
            {
                var peers = new[] { new RingPeer(0, "127.0.0.1", proxy.Port), new RingPeer(1, "127.0.0.1", listeners[1].Port) };
                var session = Ring.NewSession();
                var security = RingSecurity.FromSecret(Secret, encrypt);
                ranks = Ring.OnAllRanks(2, r => RingAllReduce.Connect(listeners[r], session, r, peers, TimeSpan.FromSeconds(10),
                    security: security, inlineStepBytes: 0, wire: wire));
                var data = new[] { Input(0, length), Input(1, length) };
                Ring.OnAllRanks(2, r => ranks[r].AllReduceMean(data[r], 1.0));
                counted = ranks[1].LastBytesSent;
                // Rank 0 has read all of it, through the proxy, which records before it forwards.
                return proxy.Upstream()[0].Length;
            }
            finally
            {
                foreach (var r in ranks)
                    r.Dispose();
                foreach (var l in listeners)
                    l.Dispose();
            }
        }

        var fp32 = Captured(RingWire.Fp32, out var counted32);
        var bf16 = Captured(RingWire.Bf16, out var counted16);
        // Rank 1 sends one chunk in each phase, length floats in all. Besides that: the handshake, the weight record's
        // frame, two data headers, and (encrypted) one tag per sealed record: the header and record frame, each header
        // and each block (blocks hold the same number of floats in either format).
        var tag = encrypt ? RingAllReduce.TagBytes : 0;
        int chunk0 = (length + 1) / 2, chunk1 = length / 2;
        int Blocks(int count) => (count * sizeof(float) + RingAllReduce.BlockBytes - 1) / RingAllReduce.BlockBytes;
        long framing = RingAllReduce.FrameHeaderBytes + RingAllReduce.RecordBytes + tag
            + 2 * (RingAllReduce.FrameHeaderBytes + tag) + (Blocks(chunk0) + Blocks(chunk1)) * tag;
        long handshake = RingHandshake.HelloSize + RingHandshake.ProofSize;
        Assert.Equal(framing + (long)length * sizeof(float), counted32);
        Assert.Equal(framing + (long)length * sizeof(ushort), counted16);
        Assert.Equal(handshake + counted32, fp32);
        Assert.Equal(handshake + counted16, bf16);
    }
}
