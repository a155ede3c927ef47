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
    public static void Scale(Span<float> data, float factor)
    {
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var d = MemoryMarshal.Cast<float, Vector<float>>(data);
            var f = new Vector<float>(factor);
            for (var j = 0; j < d.Length; j++)
                d[j] *= f;
            i = d.Length * Vector<float>.Count;
        }
        for (; i < data.Length; i++)
            data[i] *= factor;
    }
}
