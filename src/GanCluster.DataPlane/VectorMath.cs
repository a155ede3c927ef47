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
}
