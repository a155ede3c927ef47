using GanCluster.Training.Data;
using SkiaSharp;

namespace GanCluster.Training.Tests.Data;

public sealed class FolderDatasetTests : IDisposable
{
    readonly TempFolder _dir = new();

    public FolderDatasetTests() => TorchSetup.Ensure();

    public void Dispose() => _dir.Dispose();

    static readonly SKColor Red = new(255, 0, 0);
    static readonly SKColor Green = new(0, 255, 0);
    static readonly SKColor Blue = new(0, 0, 255);

    /// <summary>Writes an image whose pixel (x, y) has colour <paramref name="colour"/>(x, y).</summary>
    string WriteImage(string name, int width, int height, Func<int, int, SKColor> colour, SKEncodedImageFormat format = SKEncodedImageFormat.Png)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
                bitmap.SetPixel(x, y, colour(x, y));
        using var data = bitmap.Encode(format, 100);
        var path = _dir.File(name);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    string WriteSolid(string name, int width, int height, SKColor colour, SKEncodedImageFormat format = SKEncodedImageFormat.Png) =>
        WriteImage(name, width, height, (_, _) => colour, format);

    static float Unit(int v) => v / 127.5f - 1f;

    static float[] ChannelMeans(TorchSharp.torch.Tensor image) =>
        Enumerable.Range(0, (int)image.shape[0]).Select(c => image[c].mean().item<float>()).ToArray();

    static void AssertColour(TorchSharp.torch.Tensor image, SKColor colour, float tolerance)
    {
        var rgb = new[] { colour.Red, colour.Green, colour.Blue };
        for (var c = 0; c < 3; c++)
        {
            Assert.InRange(image[c].min().item<float>(), Unit(rgb[c]) - tolerance, Unit(rgb[c]) + tolerance);
            Assert.InRange(image[c].max().item<float>(), Unit(rgb[c]) - tolerance, Unit(rgb[c]) + tolerance);
        }
    }

    [Fact]
    public void Solid_png_and_jpeg_give_their_colours()
    {
        WriteSolid("a-red.png", 32, 32, Red);
        WriteSolid("b-green.jpg", 32, 32, Green, SKEncodedImageFormat.Jpeg);
        using var set = ImageDatasets.LoadFolder(_dir.Path, 32, 3);
        Assert.Equal(new long[] { 2, 3, 32, 32 }, set.Data.shape);
        Assert.Equal(TorchSharp.torch.ScalarType.Float32, set.Data.dtype);
        // PNG is lossless: exact.
        Assert.Equal(1f, set.Data[0, 0].min().item<float>());
        Assert.Equal(-1f, set.Data[0, 1].max().item<float>());
        Assert.Equal(-1f, set.Data[0, 2].max().item<float>());
        // JPEG: approximately.
        AssertColour(set.Data[1], Green, 0.06f);
    }

    [Fact]
    public void Non_square_image_is_centre_cropped_then_scaled()
    {
        // 40x30: 5-pixel blue borders left and right around a 30x30 red centre. The crop keeps only the red.
        WriteImage("wide.png", 40, 30, (x, _) => x < 5 || x >= 35 ? Blue : Red);
        using var set = ImageDatasets.LoadFolder(_dir.Path, 32, 3, FolderResize.CenterCrop);
        Assert.Equal(new long[] { 1, 3, 32, 32 }, set.Data.shape);
        AssertColour(set.Data[0], Red, 0.02f);

        // Tall image, and a downscale: the crop keeps the vertical centre.
        using var tallDir = new TempFolder();
        var tall = Path.Combine(tallDir.Path, "tall.png");
        File.Copy(WriteImage("tall/tall.png", 64, 100, (_, y) => y < 18 || y >= 82 ? Blue : Green), tall);
        using var set2 = ImageDatasets.LoadFolder(tallDir.Path, 16, 3);
        Assert.Equal(new long[] { 1, 3, 16, 16 }, set2.Data.shape);
        AssertColour(set2.Data[0], Green, 0.02f);
    }

    [Fact]
    public void Greyscale_uses_luma()
    {
        WriteSolid("grey.png", 32, 32, new SKColor(200, 100, 50));
        using var set = ImageDatasets.LoadFolder(_dir.Path, 32, 1);
        Assert.Equal(new long[] { 1, 1, 32, 32 }, set.Data.shape);
        // round(0.299*200 + 0.587*100 + 0.114*50) = round(124.2) = 124
        Assert.Equal(Unit(124), set.Data.min().item<float>(), 6);
        Assert.Equal(Unit(124), set.Data.max().item<float>(), 6);

        using var white = new TempFolder();
        File.Copy(WriteSolid("white.png", 8, 8, SKColors.White), Path.Combine(white.Path, "white.png"));
        using var set2 = ImageDatasets.LoadFolder(white.Path, 8, 1);
        Assert.Equal(1f, set2.Data.min().item<float>());
    }

    [Fact]
    public void Alpha_is_dropped_without_darkening()
    {
        WriteSolid("half-transparent.png", 16, 16, new SKColor(255, 0, 0, 100));
        using var set = ImageDatasets.LoadFolder(_dir.Path, 16, 3);
        Assert.Equal(new long[] { 1, 3, 16, 16 }, set.Data.shape);
        AssertColour(set.Data[0], Red, 0.01f);
    }

    [Fact]
    public void Subfolders_are_searched_and_files_sorted_by_path()
    {
        WriteSolid("b.png", 16, 16, Green);
        WriteSolid("a/z.PNG", 16, 16, Red);
        WriteSolid("c/sub/x.JPEG", 16, 16, Blue, SKEncodedImageFormat.Jpeg);
        WriteSolid("c/sub/y.webp", 16, 16, Blue, SKEncodedImageFormat.Webp);
        File.WriteAllText(_dir.File("notes.txt"), "not an image");
        using var set = ImageDatasets.LoadFolder(_dir.Path, 16, 3);
        Assert.Equal(3, set.Count);
        AssertColour(set.Data[0], Red, 0.01f);
        AssertColour(set.Data[1], Green, 0.01f);
        AssertColour(set.Data[2], Blue, 0.06f);
    }

    [Fact]
    public void Resize_none_accepts_images_of_the_target_size()
    {
        WriteSolid("one.png", 24, 24, Red);
        WriteSolid("two.png", 24, 24, Blue);
        using var set = ImageDatasets.LoadFolder(_dir.Path, 24, 3, FolderResize.None);
        Assert.Equal(new long[] { 2, 3, 24, 24 }, set.Data.shape);
        Assert.Equal(new[] { 1f, -1f, -1f }, ChannelMeans(set.Data[0]));
        Assert.Equal(new[] { -1f, -1f, 1f }, ChannelMeans(set.Data[1]));
    }

    [Fact]
    public void Many_images_span_several_chunks_in_order()
    {
        // More than one decoding chunk (256): each image's grey level encodes its index.
        for (var i = 0; i < 300; i++)
        {
            var v = (byte)(i % 256);
            WriteSolid($"img{i:D4}.png", 4, 4, new SKColor(v, v, v));
        }
        using var set = ImageDatasets.LoadFolder(_dir.Path, 4, 1, FolderResize.None);
        Assert.Equal(new long[] { 300, 1, 4, 4 }, set.Data.shape);
        var values = set.Data.data<float>().ToArray();
        for (var i = 0; i < 300; i++) Assert.Equal(Unit(i % 256), values[i * 16 + 5], 6);
    }

    static void AssertProblem(Action load, string path, string phrase)
    {
        var e = Assert.Throws<DatasetException>(load);
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains(phrase, e.Message);
    }

    [Fact]
    public void Wrong_size_with_resize_none_names_the_file()
    {
        WriteSolid("a.png", 32, 32, Red);
        var wide = WriteSolid("b.png", 40, 30, Red);
        AssertProblem(() => ImageDatasets.LoadFolder(_dir.Path, 32, 3, FolderResize.None), wide, "is 40x30, expected 32x32");
    }

    [Fact]
    public void Mixed_sizes_with_resize_none_name_the_first_odd_file()
    {
        WriteSolid("1.png", 16, 16, Red);
        var small = WriteSolid("2.png", 8, 8, Red);
        WriteSolid("3.png", 16, 16, Red);
        WriteSolid("4.png", 12, 12, Red);
        AssertProblem(() => ImageDatasets.LoadFolder(_dir.Path, 16, 3, FolderResize.None), small, "is 8x8, expected 16x16");
    }

    [Fact]
    public void Undecodable_image_names_the_file()
    {
        WriteSolid("a.png", 16, 16, Red);
        var broken = _dir.File("b.png");
        File.WriteAllBytes(broken, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        AssertProblem(() => ImageDatasets.LoadFolder(_dir.Path, 16, 3), broken, "cannot be decoded");

        // A real JPEG cut short.
        using var other = new TempFolder();
        var full = File.ReadAllBytes(WriteImage("noise.jpg", 64, 64, (x, y) => new SKColor((byte)(x * 4), (byte)(y * 4), (byte)(x ^ y)), SKEncodedImageFormat.Jpeg));
        var cut = Path.Combine(other.Path, "cut.jpg");
        File.WriteAllBytes(cut, full[..(full.Length / 2)]);
        AssertProblem(() => ImageDatasets.LoadFolder(other.Path, 16, 3), cut, "cannot be decoded");
    }

    [Fact]
    public void Folder_without_images_and_missing_folder_are_reported()
    {
        File.WriteAllText(_dir.File("sub/readme.txt"), "nothing here");
        AssertProblem(() => ImageDatasets.LoadFolder(_dir.Path, 16, 3), _dir.Path, "no images");

        var missing = Path.Combine(_dir.Path, "missing");
        AssertProblem(() => ImageDatasets.LoadFolder(missing, 16, 3), missing, "does not exist");
    }

    [Fact]
    public void Bad_arguments_are_rejected()
    {
        WriteSolid("a.png", 8, 8, Red);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => ImageDatasets.LoadFolder(_dir.Path, 8, 2));
        Assert.Equal("channels", e.ParamName);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => ImageDatasets.LoadFolder(_dir.Path, 0, 3));
        Assert.Equal("imageSize", e.ParamName);
    }
}
