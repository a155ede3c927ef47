using System.Buffers.Binary;
using System.IO.Compression;
using GanCluster.Training.Data;

namespace GanCluster.Training.Tests.Data;

public sealed class IdxDatasetTests : IDisposable
{
    const int Side = 28;
    readonly TempFolder _dir = new();

    public IdxDatasetTests() => TorchSetup.Ensure();

    public void Dispose() => _dir.Dispose();

    /// <summary>Image 0 all 0, image 1 all 255, image 2 a ramp (r*28+c) % 256 (holds 0, 128, 255 among others).</summary>
    static byte[] Pixels(int count)
    {
        var pixels = new byte[count * Side * Side];
        for (var i = 0; i < count; i++)
            for (var p = 0; p < Side * Side; p++)
                pixels[i * Side * Side + p] = (i % 3) switch { 0 => 0, 1 => 255, _ => (byte)(p % 256) };
        return pixels;
    }

    static byte[] Idx(int count, int rows, int cols, byte[] pixels, uint magic = 0x00000803)
    {
        var bytes = new byte[16 + pixels.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(0), magic);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)count);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), (uint)rows);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)cols);
        pixels.CopyTo(bytes, 16);
        return bytes;
    }

    static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(data);
        return output.ToArray();
    }

    string Write(string name, byte[] content)
    {
        var path = _dir.File(name);
        System.IO.File.WriteAllBytes(path, content);
        return path;
    }

    static void AssertFixture(SampleSet set, int count)
    {
        Assert.Equal(new long[] { count, 1, Side, Side }, set.Data.shape);
        Assert.Equal(TorchSharp.torch.ScalarType.Float32, set.Data.dtype);
        var values = set.Data.data<float>().ToArray();
        var expected = Pixels(count);
        for (var i = 0; i < values.Length; i++)
            Assert.Equal(expected[i] / 127.5f - 1f, values[i], 6);
        // Exact end points and a mid value.
        Assert.Equal(-1f, values[0]);
        Assert.Equal(1f, values[Side * Side]);
        var ramp = 2 * Side * Side;
        Assert.Equal(128 / 127.5f - 1f, values[ramp + 128], 6); // pixel (4, 16) of image 2 holds 128
        Assert.Equal(1f, values[ramp + 255]);
        Assert.Equal(-1f, values[ramp + 256]);
    }

    [Fact]
    public void Raw_file_loads_with_exact_scaling_and_order()
    {
        var path = Write("train-images-idx3-ubyte", Idx(3, Side, Side, Pixels(3)));
        using var set = ImageDatasets.LoadIdx(path, Side);
        AssertFixture(set, 3);
        Assert.Equal(path, set.Source);
    }

    [Fact]
    public void Gzip_is_detected_by_content_not_name()
    {
        var gz = Write("mnist.bin", Gzip(Idx(3, Side, Side, Pixels(3))));
        using (var set = ImageDatasets.LoadIdx(gz, Side)) AssertFixture(set, 3);

        // A raw file that happens to be named .gz is read raw.
        var raw = Write("raw-images-idx3-ubyte.gz", Idx(3, Side, Side, Pixels(3)));
        using (var set = ImageDatasets.LoadIdx(raw, Side)) AssertFixture(set, 3);
    }

    [Fact]
    public void Folder_with_the_shared_sample_name_is_found()
    {
        Write("sample/images-idx3-ubyte.gz", Gzip(Idx(3, Side, Side, Pixels(3))));
        Write("sample/labels-idx1-ubyte.gz", Gzip([0, 0, 8, 1, 0, 0, 0, 0]));
        using var set = ImageDatasets.LoadIdx(Path.Combine(_dir.Path, "sample"), Side);
        AssertFixture(set, 3);
    }

    [Fact]
    public void FashionMnist_folder_picks_the_training_file()
    {
        Write("fashion/t10k-images-idx3-ubyte.gz", Gzip(Idx(2, Side, Side, Pixels(2))));
        var train = Write("fashion/train-images-idx3-ubyte.gz", Gzip(Idx(3, Side, Side, Pixels(3))));
        using var set = ImageDatasets.LoadIdx(Path.Combine(_dir.Path, "fashion"), Side);
        AssertFixture(set, 3);
        Assert.Equal(train, set.Source);
    }

    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    public void Resize_gives_the_requested_shape_within_range(int size)
    {
        var path = Write("train-images-idx3-ubyte", Idx(3, Side, Side, Pixels(3)));
        using var set = ImageDatasets.LoadIdx(path, size);
        Assert.Equal(new long[] { 3, 1, size, size }, set.Data.shape);
        Assert.True(set.Data.min().item<float>() >= -1f);
        Assert.True(set.Data.max().item<float>() <= 1f);
        // Solid images stay solid.
        Assert.Equal(-1f, set.Data[0].max().item<float>(), 5);
        Assert.Equal(1f, set.Data[1].min().item<float>(), 5);
        // The ramp image keeps real variation.
        Assert.True(set.Data[2].std().item<float>() > 0.3f);
    }

    [Fact]
    public void Downscale_to_a_smaller_size_works()
    {
        var path = Write("train-images-idx3-ubyte", Idx(3, Side, Side, Pixels(3)));
        using var set = ImageDatasets.LoadIdx(path, 14);
        Assert.Equal(new long[] { 3, 1, 14, 14 }, set.Data.shape);
        Assert.True(set.Data.abs().max().item<float>() <= 1f);
    }

    static void AssertProblem(Action load, string path, string phrase)
    {
        var e = Assert.Throws<DatasetException>(load);
        Assert.Contains(path, e.Message);
        Assert.Contains(phrase, e.Message);
        Assert.Equal(path, e.Path);
    }

    [Fact]
    public void Missing_file_or_folder_is_reported()
    {
        var missing = Path.Combine(_dir.Path, "nope", "train-images-idx3-ubyte.gz");
        AssertProblem(() => ImageDatasets.LoadIdx(missing, Side), missing, "does not exist");
        var folder = Path.Combine(_dir.Path, "no-folder");
        AssertProblem(() => ImageDatasets.LoadIdx(folder, Side), folder, "does not exist");
    }

    [Fact]
    public void Folder_without_an_idx_file_is_reported()
    {
        Write("empty/readme.txt", [1, 2, 3]);
        var folder = Path.Combine(_dir.Path, "empty");
        AssertProblem(() => ImageDatasets.LoadIdx(folder, Side), folder, "no IDX image file");
    }

    [Fact]
    public void Wrong_magic_is_reported()
    {
        var labels = Write("train-labels-idx1-ubyte", Idx(3, Side, Side, Pixels(3), magic: 0x00000801));
        AssertProblem(() => ImageDatasets.LoadIdx(labels, Side), labels, "not an IDX image file: magic 0x00000801 (expected 0x00000803)");
        var gzLabels = Write("labels.gz", Gzip(Idx(3, Side, Side, Pixels(3), magic: 0x00000801)));
        AssertProblem(() => ImageDatasets.LoadIdx(gzLabels, Side), gzLabels, "magic 0x00000801");
        var tiny = Write("tiny", [0, 0]);
        AssertProblem(() => ImageDatasets.LoadIdx(tiny, Side), tiny, "not an IDX image file");
    }

    [Fact]
    public void Truncated_file_reports_expected_and_found_bytes()
    {
        // Header says 3 images of 28x28 (16 + 2352 bytes) but only 2 images follow (16 + 1568).
        var path = Write("train-images-idx3-ubyte", Idx(3, Side, Side, Pixels(2)));
        AssertProblem(() => ImageDatasets.LoadIdx(path, Side), path, "header says 3 images of 28x28, expected 2368 bytes but found 1584");

        var gz = Write("cut.gz", Gzip(Idx(3, Side, Side, Pixels(2))));
        AssertProblem(() => ImageDatasets.LoadIdx(gz, Side), gz, "expected 2368 bytes but found 1584");

        var header = Write("header-only", Idx(3, Side, Side, [])[..10]);
        AssertProblem(() => ImageDatasets.LoadIdx(header, Side), header, "truncated IDX header");
    }

    [Fact]
    public void Absurd_header_counts_do_not_overflow()
    {
        var path = Write("huge", Idx(-1, -1, -1, [1, 2, 3]));
        AssertProblem(() => ImageDatasets.LoadIdx(path, Side), path, "header says 4294967295 images of 4294967295x4294967295");
    }

    [Fact]
    public void Trailing_bytes_are_reported()
    {
        var path = Write("train-images-idx3-ubyte", Idx(2, Side, Side, Pixels(3)));
        AssertProblem(() => ImageDatasets.LoadIdx(path, Side), path, "784 unexpected bytes");
    }

    [Fact]
    public void Corrupt_gzip_is_reported()
    {
        var garbage = new byte[600];
        new Random(7).NextBytes(garbage);
        garbage[0] = 0x1f;
        garbage[1] = 0x8b;
        garbage[2] = 8;
        garbage[3] = 0;
        var path = Write("train-images-idx3-ubyte.gz", garbage);
        AssertProblem(() => ImageDatasets.LoadIdx(path, Side), path, "corrupt gzip");

        // A valid stream cut short must also fail as a DatasetException naming the file.
        var full = Gzip(Idx(3, Side, Side, Pixels(3)));
        var cut = Write("cut-images-idx3-ubyte.gz", full[..(full.Length / 2)]);
        var e = Assert.Throws<DatasetException>(() => ImageDatasets.LoadIdx(cut, Side));
        Assert.Contains(cut, e.Message);
    }
}
