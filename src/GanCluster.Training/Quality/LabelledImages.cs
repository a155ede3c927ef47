using GanCluster.Training.Data;
using GanCluster.Training.Spec;

namespace GanCluster.Training.Quality;

/// <summary>A labelled image dataset in memory: the images as training loads them, and one class label (0–9) per image.</summary>
public sealed class LabelledImages : IDisposable
{
    public const int Classes = 10;

    LabelledImages(SampleSet images, byte[] labels)
    {
        Images = images;
        Labels = labels;
    }

    public SampleSet Images { get; }
    public byte[] Labels { get; }

    /// <summary>Null when <paramref name="d"/>'s kind carries labels, else why it cannot be scored by a classifier.</summary>
    public static string? WhyUnlabelled(DatasetSpec d) => RunSpecValidator.LabelledDatasetKinds.Contains(d.Kind) ? null
        : d.IsSynthetic ? $"dataset kind {d.Kind} is 2-D points, not images"
        : $"dataset kind {d.Kind} has no class labels (labelled kinds: {string.Join(", ", RunSpecValidator.LabelledDatasetKinds)})";

    /// <summary>
    /// The files the images and labels are read from, in order: what the classifier cache's key hashes. MNIST and
    /// Fashion-MNIST: the IDX image file and its label file beside it; CIFAR-10: the batch files (labels are inside).
    /// </summary>
    public static IReadOnlyList<string> Files(DatasetSpec d)
    {
        if (WhyUnlabelled(d) is { } why) throw new DatasetException(d.Path ?? "(dataset.path)", why);
        var path = d.Path ?? throw new DatasetException("(dataset.path)", $"dataset kind {d.Kind} needs a path");
        if (d.Kind == "cifar10") return ImageDatasets.Cifar10Files(path);
        var images = ImageDatasets.IdxImageFile(path);
        var labels = ImageDatasets.IdxLabelFile(images)
                     ?? throw new DatasetException(images, "has no label file beside it (the same name with labels-idx1 for images-idx3, e.g. train-labels-idx1-ubyte.gz), which the quality classifier needs");
        return [images, labels];
    }

    /// <summary>Loads images (at the run's image size) and labels; labels must be 0–9 and one per image.</summary>
    public static LabelledImages Load(DatasetSpec d)
    {
        var files = Files(d);
        var images = d.Kind == "cifar10" ? ImageDatasets.LoadCifar10(d.Path!, d.ImageSize) : ImageDatasets.LoadIdx(files[0], d.ImageSize);
        try
        {
            var labels = d.Kind == "cifar10" ? ImageDatasets.LoadCifar10Labels(d.Path!) : ImageDatasets.LoadIdxLabels(files[1], images.Count);
            if (labels.Length != images.Count)
                throw new DatasetException(d.Path!, $"{labels.Length} labels for {images.Count} images");
            var bad = Array.FindIndex(labels, l => l >= Classes);
            if (bad >= 0)
                throw new DatasetException(files[^1], $"label {labels[bad]} at image {bad} is not a class 0–{Classes - 1}");
            return new LabelledImages(images, labels);
        }
        catch
        {
            images.Dispose();
            throw;
        }
    }

    public void Dispose() => Images.Dispose();
}
