using GanCluster.Training.Data;

namespace GanCluster.Training.Tests.Data;

public sealed class CifarDatasetTests : IDisposable
{
    const int Record = 3073;
    readonly TempFolder _dir = new();

    public CifarDatasetTests() => TorchSetup.Ensure();

    public void Dispose() => _dir.Dispose();

    /// <summary>A record with solid G and B planes and an R plane given per pixel (y, x).</summary>
    static byte[] CifarRecord(byte label, Func<int, int, byte> red, byte green, byte blue)
    {
        var record = new byte[Record];
        record[0] = label;
        for (var y = 0; y < 32; y++)
            for (var x = 0; x < 32; x++)
            {
                record[1 + y * 32 + x] = red(y, x);
                record[1 + 1024 + y * 32 + x] = green;
                record[1 + 2048 + y * 32 + x] = blue;
            }
        return record;
    }

    static readonly byte[] Solid = CifarRecord(3, (_, _) => 255, 0, 128);
    static readonly byte[] Ramp = CifarRecord(7, (y, x) => (byte)((y * 32 + x) % 256), 10, 20);
    static readonly byte[] Green = CifarRecord(1, (_, _) => 0, 255, 0);

    string Write(string name, params byte[][] records)
    {
        var path = _dir.File(name);
        File.WriteAllBytes(path, records.SelectMany(r => r).ToArray());
        return path;
    }

    static float Unit(int v) => v / 127.5f - 1f;

    static void AssertRecord(TorchSharp.torch.Tensor image, byte[] record)
    {
        var values = image.data<float>().ToArray();
        Assert.Equal(3072, values.Length);
        for (var i = 0; i < 3072; i++) Assert.Equal(Unit(record[1 + i]), values[i], 6);
    }

    [Fact]
    public void Single_file_keeps_record_order_and_R_G_B_planes()
    {
        var path = Write("data_batch_1.bin", Solid, Ramp, Green);
        using var set = ImageDatasets.LoadCifar10(path, 32);
        Assert.Equal(new long[] { 3, 3, 32, 32 }, set.Data.shape);

        // Record 0: R plane first (255 → 1), then G (0 → -1), then B (128).
        Assert.Equal(1f, set.Data[0, 0].min().item<float>());
        Assert.Equal(-1f, set.Data[0, 1].max().item<float>());
        Assert.Equal(Unit(128), set.Data[0, 2].mean().item<float>(), 6);
        // Record 1: the R plane is row-major (y, x).
        Assert.Equal(Unit((5 * 32 + 7) % 256), set.Data[1, 0, 5, 7].item<float>(), 6);
        Assert.Equal(Unit((31 * 32 + 2) % 256), set.Data[1, 0, 31, 2].item<float>(), 6);
        for (var i = 0; i < 3; i++) AssertRecord(set.Data[i], new[] { Solid, Ramp, Green }[i]);
    }

    [Fact]
    public void Folder_concatenates_the_training_batches_in_order()
    {
        Write("cifar/data_batch_1.bin", Solid, Ramp);
        Write("cifar/data_batch_2.bin", Green);
        Write("cifar/test_batch.bin", Ramp, Ramp, Ramp, Ramp);
        using var set = ImageDatasets.LoadCifar10(Path.Combine(_dir.Path, "cifar"), 32);
        Assert.Equal(new long[] { 3, 3, 32, 32 }, set.Data.shape);
        AssertRecord(set.Data[0], Solid);
        AssertRecord(set.Data[1], Ramp);
        AssertRecord(set.Data[2], Green);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(16)]
    public void Resize_gives_the_requested_shape(int size)
    {
        var path = Write("data_batch_1.bin", Solid, Ramp);
        using var set = ImageDatasets.LoadCifar10(path, size);
        Assert.Equal(new long[] { 2, 3, size, size }, set.Data.shape);
        Assert.True(set.Data.abs().max().item<float>() <= 1f);
        Assert.Equal(1f, set.Data[0, 0].min().item<float>(), 5);
        Assert.Equal(-1f, set.Data[0, 1].max().item<float>(), 5);
    }

    [Fact]
    public void Truncated_file_is_reported()
    {
        var path = Write("data_batch_1.bin", Solid, Ramp[..3000]);
        var e = Assert.Throws<DatasetException>(() => ImageDatasets.LoadCifar10(path, 32));
        Assert.Contains(path, e.Message);
        Assert.Contains("not a multiple of 3073", e.Message);
        Assert.Contains("truncated", e.Message);

        // In a folder, the bad batch is the one named.
        Write("cifar/data_batch_1.bin", Solid);
        var bad = Write("cifar/data_batch_2.bin", Ramp[..100]);
        e = Assert.Throws<DatasetException>(() => ImageDatasets.LoadCifar10(Path.Combine(_dir.Path, "cifar"), 32));
        Assert.Equal(bad, e.Path);
        Assert.Contains(bad, e.Message);
    }

    [Fact]
    public void Empty_file_missing_path_and_folder_without_batches_are_reported()
    {
        var empty = Write("data_batch_1.bin");
        var e = Assert.Throws<DatasetException>(() => ImageDatasets.LoadCifar10(empty, 32));
        Assert.Contains(empty, e.Message);
        Assert.Contains("is empty", e.Message);

        var missing = Path.Combine(_dir.Path, "missing.bin");
        e = Assert.Throws<DatasetException>(() => ImageDatasets.LoadCifar10(missing, 32));
        Assert.Contains(missing, e.Message);
        Assert.Contains("does not exist", e.Message);

        Write("only-test/test_batch.bin", Solid);
        var folder = Path.Combine(_dir.Path, "only-test");
        e = Assert.Throws<DatasetException>(() => ImageDatasets.LoadCifar10(folder, 32));
        Assert.Contains(folder, e.Message);
        Assert.Contains("no CIFAR-10 training batches", e.Message);
    }
}
