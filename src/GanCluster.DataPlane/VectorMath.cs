using System.Numerics;
using System.Runtime.InteropServices;

namespace GanCluster.DataPlane;

static class VectorMath
{
    /// <summary>dst[i] += src[i], SIMD-wide.</summary>
    public static void Add(Span<float> dst, ReadOnlySpan<float> src)
    {
        if (src.Length != dst.Length)
            throw new ArgumentException("length mismatch", nameof(src));
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, Vector<float>>(dst);
            var s = MemoryMarshal.Cast<float, Vector<float>>(src);
            for (var j = 0; j < d.Length; j++)
                d[j] += s[j];
            i = d.Length * Vector<float>.Count;
        }
        for (; i < dst.Length; i++)
            dst[i] += src[i];
    }

    /// <summary>data[i] *= factor, SIMD-wide.</summary>
    public static void Scale(Span<float> data, float factor) => ScaleInto(data, data, factor, add: false);

    /// <summary>dst[i] = src[i]·factor, or dst[i] += src[i]·factor when <paramref name="add"/>; the product is rounded
    /// to float before the add, as when a rank scales its own buffer and the ring adds it.</summary>
    public static void ScaleInto(Span<float> dst, ReadOnlySpan<float> src, float factor, bool add)
    {
        if (src.Length != dst.Length)
            throw new ArgumentException("length mismatch", nameof(src));
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, Vector<float>>(dst);
            var s = MemoryMarshal.Cast<float, Vector<float>>(src);
            var f = new Vector<float>(factor);
            if (add)
            {
                for (var j = 0; j < d.Length; j++)
                    d[j] += s[j] * f;
            }
            else
            {
                for (var j = 0; j < d.Length; j++)
                    d[j] = s[j] * f;
            }
            i = d.Length * Vector<float>.Count;
        }
        for (; i < dst.Length; i++)
            dst[i] = add ? dst[i] + src[i] * factor : src[i] * factor;
    }
    // bf16 is the upper half of an fp32. Rounding to nearest even adds 0x7FFF plus the lowest kept bit before the
    // cut; a NaN gets its quiet bit set first, since a payload only in the cut-off bits would otherwise become inf.
    const uint Bf16Half = 0x7FFF;
    const uint AbsMask = 0x7FFFFFFF;
    const uint InfBits = 0x7F800000;
    const uint QuietBit = 0x00400000;
    const uint HighHalf = 0xFFFF0000;

    /// <summary>The fp32 bits rounded to nearest even at bit 16 (low half not cleared); NaN stays NaN, ±inf stays.</summary>
    static uint RoundBits(uint bits) =>
        (bits & AbsMask) > InfBits ? bits | QuietBit : bits + Bf16Half + ((bits >> 16) & 1);

    static Vector<uint> RoundBits(Vector<uint> bits)
    {
        var rounded = bits + new Vector<uint>(Bf16Half) + (Vector.ShiftRightLogical(bits, 16) & Vector<uint>.One);
        var nan = Vector.GreaterThan(bits & new Vector<uint>(AbsMask), new Vector<uint>(InfBits));
        return Vector.ConditionalSelect(nan, bits | new Vector<uint>(QuietBit), rounded);
    }

    /// <summary>One float rounded to the nearest bf16-representable float (low half zero).</summary>
    static float Rounded(float x) => BitConverter.UInt32BitsToSingle(RoundBits(BitConverter.SingleToUInt32Bits(x)) & HighHalf);

    /// <summary>One float rounded to bf16 (round to nearest even; NaN stays NaN).</summary>
    public static ushort ToBf16(float x) => (ushort)(RoundBits(BitConverter.SingleToUInt32Bits(x)) >> 16);

    /// <summary>The float a bf16 stands for (exact).</summary>
    public static float FromBf16(ushort x) => BitConverter.UInt32BitsToSingle((uint)x << 16);

    /// <summary>dst[i] = bf16(src[i]), SIMD-wide.</summary>
    public static void ToBf16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        if (src.Length != dst.Length)
            throw new ArgumentException("length mismatch", nameof(dst));
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var s = MemoryMarshal.Cast<float, Vector<uint>>(src);
            var d = MemoryMarshal.Cast<ushort, Vector<ushort>>(dst);
            // Two float vectors narrow into one bf16 vector.
            var pairs = Math.Min(s.Length / 2, d.Length);
            for (var j = 0; j < pairs; j++)
                d[j] = Vector.Narrow(
                    Vector.ShiftRightLogical(RoundBits(s[2 * j]), 16),
                    Vector.ShiftRightLogical(RoundBits(s[2 * j + 1]), 16));
            i = pairs * Vector<ushort>.Count;
        }
        for (; i < src.Length; i++)
            dst[i] = ToBf16(src[i]);
    }

    /// <summary>dst[i] = float(src[i]) (exact), SIMD-wide.</summary>
    public static void FromBf16(ReadOnlySpan<ushort> src, Span<float> dst) => Bf16Into(dst, src, add: false, round: false);

    /// <summary>
    /// dst[i] += float(src[i]) in fp32; with <paramref name="round"/> the sum is then rounded to a bf16-representable
    /// float (low half zero), the value a bf16 ring hands every rank.
    /// </summary>
    public static void AddBf16(Span<float> dst, ReadOnlySpan<ushort> src, bool round) => Bf16Into(dst, src, add: true, round);

    /// <summary>data[i] rounded to the nearest bf16-representable float, in place.</summary>
    public static void RoundToBf16(Span<float> data)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, Vector<uint>>(data);
            var high = new Vector<uint>(HighHalf);
            for (var j = 0; j < d.Length; j++)
                d[j] = RoundBits(d[j]) & high;
            i = d.Length * Vector<uint>.Count;
        }
        for (; i < data.Length; i++)
            data[i] = Rounded(data[i]);
    }

    static void Bf16Into(Span<float> dst, ReadOnlySpan<ushort> src, bool add, bool round)
    {
        if (src.Length != dst.Length)
            throw new ArgumentException("length mismatch", nameof(src));
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var s = MemoryMarshal.Cast<ushort, Vector<ushort>>(src);
            var d = MemoryMarshal.Cast<float, Vector<float>>(dst);
            var pairs = Math.Min(s.Length, d.Length / 2);
            var high = new Vector<uint>(HighHalf);
            for (var j = 0; j < pairs; j++)
            {
                Vector.Widen(s[j], out var lo, out var hi);
                var a = Vector.AsVectorSingle(Vector.ShiftLeft(lo, 16));
                var b = Vector.AsVectorSingle(Vector.ShiftLeft(hi, 16));
                if (add)
                {
                    a += d[2 * j];
                    b += d[2 * j + 1];
                }
                if (round)
                {
                    a = Vector.AsVectorSingle(RoundBits(Vector.AsVectorUInt32(a)) & high);
                    b = Vector.AsVectorSingle(RoundBits(Vector.AsVectorUInt32(b)) & high);
                }
                d[2 * j] = a;
                d[2 * j + 1] = b;
            }
            i = pairs * Vector<ushort>.Count;
        }
        for (; i < dst.Length; i++)
        {
            var x = FromBf16(src[i]);
            if (add)
                x += dst[i];
            if (round)
                x = Rounded(x);
            dst[i] = x;
        }
    }
}
