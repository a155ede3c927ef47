using System.Buffers.Binary;
using System.IO.Compression;
using GanCluster.Training.Quality;
using GanCluster.Training.Spec;

namespace GanCluster.Training.Tests.Quality;

/// <summary>
/// A labelled MNIST-like dataset made by the test: 10 classes of distinct synthetic 28×28 patterns (stripes in four
/// directions, a checkerboard, a disc, a ring, a plus, an X, a square frame), each image with a random shift or phase
/// and pixel noise, written as gzip IDX image and label files as MNIST ships them. Also holds a classifier trained on it
/// once for the whole test class (in the fixture's own cache folder).
/// </summary>
public sealed class LabelledFixture : IDisposable
{
    public const int Side = 28, Count = 2000;

    public LabelledFixture()
    {
        TorchSetup.Ensure();
        var (pixels, labels) = Patterns(Count, seed: 5);
        Folder = new TempFolder();
        ImagesFile = Folder.File("data/train-images-idx3-ubyte.gz");
        File.WriteAllBytes(ImagesFile, Gzip(IdxImages(pixels, Count)));
        File.WriteAllBytes(Folder.File("data/train-labels-idx1-ubyte.gz"), Gzip(IdxLabels(labels)));
        Labels = labels;
        CacheRoot = Path.Combine(Folder.Path, "cache");
        CacheDir = Path.Combine(CacheRoot, "classifiers");
        Log = new StringWriter();
        Classifier = QualityClassifier.ForDataset(Dataset, Log, CacheDir);
    }

    public TempFolder Folder { get; }
    public string DataDir => Path.Combine(Folder.Path, "data");
    public string ImagesFile { get; }
    public byte[] Labels { get; }
    /// <summary>What $GANCLUSTER_CACHE would be for <see cref="CacheDir"/>.</summary>
    public string CacheRoot { get; }
    public string CacheDir { get; }
    public StringWriter Log { get; }
    public QualityClassifier Classifier { get; }
    public DatasetSpec Dataset => new() { Kind = "mnist", Path = DataDir, ImageSize = Side };

    /// <summary>n images (bytes, row-major) and their classes, cycling through the 10 classes.</summary>
    public static (byte[] Pixels, byte[] Labels) Patterns(int n, int seed)
    {
        var random = new Random(seed);
        var pixels = new byte[n * Side * Side];
        var labels = new byte[n];
        for (var i = 0; i < n; i++)
        {
            var cls = i % 10;
            labels[i] = (byte)cls;
            int dx = random.Next(-3, 4), dy = random.Next(-3, 4), phase = random.Next(6);
            for (var y = 0; y < Side; y++)
                for (var x = 0; x < Side; x++)
                {
                    int u = x - 14 - dx, v = y - 14 - dy;
                    var r = Math.Sqrt(u * u + v * v);
                    var on = cls switch
                    {
                        0 => (y + phase) / 3 % 2 == 0,
                        1 => (x + phase) / 3 % 2 == 0,
                        2 => (x + y + phase) / 3 % 2 == 0,
                        3 => (x - y + 28 + phase) / 3 % 2 == 0,
                        4 => ((x + phase) / 4 + (y + phase) / 4) % 2 == 0,
                        5 => r <= 6,
                        6 => Math.Abs(r - 8) <= 1.5,
                        7 => (Math.Abs(u) <= 1 || Math.Abs(v) <= 1) && Math.Max(Math.Abs(u), Math.Abs(v)) <= 9,
                        8 => (Math.Abs(u - v) <= 1 || Math.Abs(u + v) <= 1) && Math.Max(Math.Abs(u), Math.Abs(v)) <= 9,
                        _ => Math.Max(Math.Abs(u), Math.Abs(v)) is >= 7 and <= 9,
                    };
                    pixels[(i * Side + y) * Side + x] = (byte)Math.Clamp((on ? 220 : 20) + random.Next(-30, 31), 0, 255);
                }
        }
        return (pixels, labels);
    }

    public static byte[] IdxImages(byte[] pixels, int count)
    {
        var bytes = new byte[16 + pixels.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(0), 0x00000803);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)count);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), Side);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), Side);
        pixels.CopyTo(bytes, 16);
        return bytes;
    }

    public static byte[] IdxLabels(byte[] labels)
    {
        var bytes = new byte[8 + labels.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(0), 0x00000801);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), (uint)labels.Length);
        labels.CopyTo(bytes, 8);
        return bytes;
    }

    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(data);
        return output.ToArray();
    }

    public void Dispose()
    {
        Classifier.Dispose();
        Folder.Dispose();
    }
}
