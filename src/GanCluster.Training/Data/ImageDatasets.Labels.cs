using System.Buffers.Binary;

namespace GanCluster.Training.Data;

/// <summary>
/// Class labels of the labelled image datasets, read beside (never instead of) the images: training loads images only,
/// the quality classifier (<see cref="Quality.QualityClassifier"/>) loads both.
/// </summary>
public static partial class ImageDatasets
{
    const uint IdxLabelMagic = 0x00000801;
    const int IdxLabelHeaderBytes = 8;

    /// <summary>The IDX image file <see cref="LoadIdx"/> reads for <paramref name="path"/>.</summary>
    public static string IdxImageFile(string path) => ResolveIdxFile(path);

    /// <summary>
    /// The label file that goes with an IDX image file: the same name with <c>images-idx3</c> → <c>labels-idx1</c>
    /// (<c>train-images-idx3-ubyte.gz</c> → <c>train-labels-idx1-ubyte.gz</c>), raw or gzip. Null when there is none.
    /// </summary>
    public static string? IdxLabelFile(string imageFile)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(imageFile))!;
        var name = Path.GetFileName(imageFile);
        var at = name.IndexOf("images-idx3", StringComparison.OrdinalIgnoreCase);
        if (at < 0) return null;
        var stem = name[..at] + "labels-idx1" + name[(at + "images-idx3".Length)..];
        if (stem.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) stem = stem[..^3];
        return new[] { stem, stem + ".gz" }.Select(n => Path.Combine(dir, n)).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// Labels of an IDX label file (magic 0x00000801, raw or gzip), one byte per image. <paramref name="expected"/> is
    /// the number of images they label: another count is an error naming both.
    /// </summary>
    public static byte[] LoadIdxLabels(string file, int expected)
    {
        var (bytes, length) = ReadMaybeGzip(file);
        if (length < IdxLabelHeaderBytes)
            throw new DatasetException(file, $"not an IDX label file: only {length} bytes");
        var magic = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        if (magic != IdxLabelMagic)
            throw new DatasetException(file, $"not an IDX label file: magic 0x{magic:X8} (expected 0x{IdxLabelMagic:X8})");
        var count = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4));
        if (count != expected)
            throw new DatasetException(file, $"holds {count} labels, but the image file holds {expected} images");
        if (length != IdxLabelHeaderBytes + (long)count)
            throw new DatasetException(file, $"header says {count} labels, expected {IdxLabelHeaderBytes + (long)count} bytes but found {length}");
        return bytes.AsSpan(IdxLabelHeaderBytes, (int)count).ToArray();
    }

    /// <summary>The CIFAR-10 batch files <see cref="LoadCifar10"/> reads for <paramref name="path"/>, in order.</summary>
    public static IReadOnlyList<string> Cifar10Files(string path)
    {
        if (File.Exists(path)) return [path];
        if (!Directory.Exists(path)) throw new DatasetException(path, "does not exist");
        var files = Enumerable.Range(1, 5).Select(i => Path.Combine(path, $"data_batch_{i}.bin")).Where(File.Exists).ToArray();
        return files.Length > 0 ? files
            : throw new DatasetException(path, "no CIFAR-10 training batches (data_batch_1.bin .. data_batch_5.bin) in this folder");
    }

    /// <summary>The label byte of every CIFAR-10 record (the first of its 3073 bytes), in the order <see cref="LoadCifar10"/> loads the images.</summary>
    public static byte[] LoadCifar10Labels(string path)
    {
        var labels = new List<byte>();
        foreach (var file in Cifar10Files(path))
        {
            var bytes = Guard(file, () => File.ReadAllBytes(file));
            if (bytes.Length == 0 || bytes.Length % CifarRecordBytes != 0)
                throw new DatasetException(file, $"length {bytes.Length} bytes is not a positive multiple of {CifarRecordBytes}: not a CIFAR-10 binary file");
            for (var at = 0; at < bytes.Length; at += CifarRecordBytes) labels.Add(bytes[at]);
        }
        return [.. labels];
    }
}
