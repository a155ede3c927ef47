using GanCluster.Training.Core;
using TorchSharp;
using System.Runtime.InteropServices;
using SkiaSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Output;

/// <summary>PNG output: sample grids for image models and scatter plots for 2-D models.</summary>
public static class ImageWriter
{
    /// <summary>Writes images [N, C, H, W] in [-1, 1] (C = 1 or 3) as one PNG grid, <paramref name="columns"/> per row, 2 px apart.</summary>
    public static void SaveGrid(Tensor images, string path, int columns = 8, int padding = 2) =>
        WriteAtomically(path, EncodeGrid(images, columns, padding));

    /// <summary>The PNG bytes of <see cref="SaveGrid"/>, in memory.</summary>
    public static byte[] EncodeGrid(Tensor images, int columns = 8, int padding = 2)
    {
        using var scope = NewDisposeScope();
        var x = images.detach().cpu().to(ScalarType.Float32);
        var (n, c, h, w) = ((int)x.shape[0], (int)x.shape[1], (int)x.shape[2], (int)x.shape[3]);
        if (c == 1) x = x.expand(n, 3, h, w);
        var cols = Math.Min(columns, n);
        var rows = (n + cols - 1) / cols;
        var (ch, cw) = (h + padding, w + padding);

        // [N, 3, H, W] → [rows, cols, 3, H+p, W+p] → [rows*(H+p), cols*(W+p), 3]: the grid as one tensor.
        // Held Scalars, not bare numbers (see Scalars).
        using Scalar half = 127.5, zero = 0, max = 255;
        var bytes = x.add(Scalars.One, Scalars.One).mul_(half).round_().clamp_(zero, max).to(ScalarType.Byte);
        var tiles = zeros([rows * cols, 3, ch, cw], ScalarType.Byte);
        tiles.narrow(0, 0, n).narrow(2, 0, h).narrow(3, 0, w).copy_(bytes);
        var grid = tiles.view(rows, cols, 3, ch, cw).permute(0, 3, 1, 4, 2).reshape(rows * ch, cols * cw, 3);
        var rgba = cat([grid, full([rows * ch, cols * cw, 1], max, ScalarType.Byte)], 2).contiguous();
        return EncodePng(rgba.data<byte>().ToArray(), cols * cw, rows * ch);
    }

    /// <summary>Writes 2-D points [N, 2] as a scatter plot over [-extent, extent]², optionally marking mode centres.</summary>
    public static void SaveScatter(float[] xy, string path, float extent, IReadOnlyList<(float X, float Y)>? modes = null, int size = 512) =>
        WriteAtomically(path, EncodeScatter(xy, extent, modes, size));

    /// <summary>The PNG bytes of <see cref="SaveScatter"/>, in memory.</summary>
    public static byte[] EncodeScatter(float[] xy, float extent, IReadOnlyList<(float X, float Y)>? modes = null, int size = 512)
    {
        using var surface = SKSurface.Create(new SKImageInfo(size, size));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        float Px(float v) => (v + extent) / (2 * extent) * size;
        float Py(float v) => size - (v + extent) / (2 * extent) * size;
        using (var axis = new SKPaint { Color = SKColors.LightGray, StrokeWidth = 1 })
        {
            canvas.DrawLine(0, Py(0), size, Py(0), axis);
            canvas.DrawLine(Px(0), 0, Px(0), size, axis);
        }
        using (var dot = new SKPaint { Color = new SKColor(20, 60, 160, 90), IsAntialias = true })
        {
            for (var i = 0; i + 1 < xy.Length; i += 2) canvas.DrawCircle(Px(xy[i]), Py(xy[i + 1]), 1.6f, dot);
        }
        if (modes is not null)
        {
            using var ring = new SKPaint { Color = SKColors.Red, Style = SKPaintStyle.Stroke, StrokeWidth = 1.5f, IsAntialias = true };
            foreach (var (mx, my) in modes) canvas.DrawCircle(Px(mx), Py(my), 6, ring);
        }
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    static byte[] EncodePng(byte[] rgba, int width, int height)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Writes through a temporary name and a rename: a reader never sees half a file.</summary>
    public static void WriteAtomically(string path, byte[] bytes)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var tmp = path + ".tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, path, overwrite: true);
    }
}
