using GanCluster.Training.Data;
using GanCluster.Training.Quality;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests.Quality;

[CollectionDefinition(Name)]
public sealed class LabelledCollection : ICollectionFixture<LabelledFixture>
{
    public const string Name = "labelled patterns";
}

/// <summary>The classifier and the scores on a labelled dataset the test makes (<see cref="LabelledFixture"/>).</summary>
[Collection(LabelledCollection.Name)]
public sealed class ImageQualityTests(LabelledFixture fixture)
{
    [Fact]
    public void Classifier_trained_on_labelled_patterns_reaches_high_held_out_accuracy()
    {
        var info = fixture.Classifier.Info;
        Assert.False(fixture.Classifier.FromCache);
        Assert.Equal(LabelledFixture.Count / 10, info.HeldOutImages);
        Assert.Equal(LabelledFixture.Count - info.HeldOutImages, info.TrainImages);
        Assert.True(info.Accuracy >= 0.95, $"held-out accuracy {info.Accuracy:P1}\n{fixture.Log}");
        Assert.Contains("held-out accuracy", fixture.Log.ToString());

        // The recorded accuracy is what the classifier does on the held-out images, recomputed here.
        using var data = LabelledImages.Load(fixture.Dataset);
        var (train, heldOut) = QualityClassifier.Split(data.Images.Count);
        Assert.Empty(train.Intersect(heldOut));
        using var idx = tensor(heldOut);
        using var images = data.Images.Data.index_select(0, idx);
        var predicted = fixture.Classifier.Predict(images);
        var correct = heldOut.Where((i, k) => predicted[k] == data.Labels[i]).Count();
        Assert.Equal(info.Accuracy, (double)correct / heldOut.Length, 9);
    }

    [Fact]
    public void Real_against_real_is_near_zero_and_uniform_noise_is_far()
    {
        using var data = LabelledImages.Load(fixture.Dataset);
        var half = data.Images.Count / 2;
        using var first = data.Images.Data.narrow(0, 0, half);
        using var second = data.Images.Data.narrow(0, half, half);
        var a = fixture.Classifier.Summarize(first);
        var b = fixture.Classifier.Summarize(second);
        var real = ImageQuality.Compare(a, b);

        using var gen = new Generator(17);
        using var uniform = rand([half, 1, LabelledFixture.Side, LabelledFixture.Side], generator: gen, device: CPU);
        using var noise = uniform.mul(2).sub(1);
        var far = ImageQuality.Compare(fixture.Classifier.Summarize(noise), b);

        Assert.Equal(half, real.Samples);
        Assert.True(far.FrechetDistance > 1, $"noise: {far}");
        Assert.True(real.FrechetDistance < far.FrechetDistance / 50, $"real vs real: {real}; noise: {far}");
        Assert.True(real.ClassKl < 0.02, $"real vs real: {real}");
        Assert.True(real.ConfidentFraction > 0.9, $"real vs real: {real}");
        Assert.True(far.ClassKl > 10 * real.ClassKl, $"real vs real: {real}; noise: {far}");
        // Each half holds every class a tenth of the time, and the classifier sees it so.
        Assert.All(a.ClassShares, s => Assert.InRange(s, 0.07, 0.13));
    }

    [Fact]
    public void The_cache_is_reused_and_keyed_by_the_files_contents()
    {
        var path = fixture.Classifier.CachePath;
        Assert.True(File.Exists(path), path);
        Assert.StartsWith(Path.GetFullPath(fixture.CacheDir), Path.GetFullPath(path));
        var written = File.GetLastWriteTimeUtc(path);
        var log = new StringWriter();

        using var again = QualityClassifier.ForDataset(fixture.Dataset, log, fixture.CacheDir);

        Assert.True(again.FromCache, log.ToString());
        Assert.Equal(path, again.CachePath);
        Assert.Equal(written, File.GetLastWriteTimeUtc(path));   // not trained and written again
        Assert.Contains("cached", log.ToString());
        Assert.DoesNotContain("training", log.ToString());
        Assert.Equal(fixture.Classifier.Info.Accuracy, again.Info.Accuracy);
        Assert.Equal(fixture.Classifier.Info.Reference.Mean, again.Info.Reference.Mean);
        using var data = LabelledImages.Load(fixture.Dataset);
        using var some = data.Images.Data.narrow(0, 0, 100);
        Assert.Equal(fixture.Classifier.Predict(some), again.Predict(some));
        Assert.Single(Directory.GetFiles(fixture.CacheDir));   // no temporary file left behind

        // The key follows the bytes, not the folder: a copy keys the same, one changed label does not.
        using var other = new TempFolder();
        foreach (var f in Directory.GetFiles(fixture.DataDir)) File.Copy(f, Path.Combine(other.Path, Path.GetFileName(f)));
        var copy = fixture.Dataset with { Path = other.Path };
        Assert.Equal(QualityClassifier.Key(fixture.Dataset), QualityClassifier.Key(copy));
        var labels = (byte[])fixture.Labels.Clone();
        labels[0] = (byte)((labels[0] + 1) % 10);
        File.WriteAllBytes(Path.Combine(other.Path, "train-labels-idx1-ubyte.gz"), LabelledFixture.Gzip(LabelledFixture.IdxLabels(labels)));
        Assert.NotEqual(QualityClassifier.Key(fixture.Dataset), QualityClassifier.Key(copy));
        Assert.NotEqual(QualityClassifier.Key(fixture.Dataset), QualityClassifier.Key(fixture.Dataset with { ImageSize = 32 }));
    }

    [Fact]
    public void Labels_are_read_beside_the_images_and_checked()
    {
        using var data = LabelledImages.Load(fixture.Dataset);
        Assert.Equal(fixture.Labels, data.Labels);
        Assert.Equal(LabelledFixture.Count, data.Images.Count);
        Assert.Equal(2, LabelledImages.Files(fixture.Dataset).Count);

        using var dir = new TempFolder();
        File.Copy(fixture.ImagesFile, Path.Combine(dir.Path, "train-images-idx3-ubyte.gz"));
        var alone = fixture.Dataset with { Path = dir.Path };
        var missing = Assert.Throws<DatasetException>(() => LabelledImages.Load(alone));
        Assert.Contains("no label file", missing.Message);
        // Training does not need the labels: the images still load alone.
        using (var images = ImageDatasets.LoadIdx(dir.Path, LabelledFixture.Side)) Assert.Equal(LabelledFixture.Count, images.Count);

        File.WriteAllBytes(Path.Combine(dir.Path, "train-labels-idx1-ubyte"), LabelledFixture.IdxLabels(new byte[5]));
        var count = Assert.Throws<DatasetException>(() => LabelledImages.Load(alone));
        Assert.Contains($"holds 5 labels, but the image file holds {LabelledFixture.Count} images", count.Message);

        var bad = (byte[])fixture.Labels.Clone();
        bad[3] = 12;
        File.WriteAllBytes(Path.Combine(dir.Path, "train-labels-idx1-ubyte"), LabelledFixture.IdxLabels(bad));
        Assert.Contains("label 12 at image 3", Assert.Throws<DatasetException>(() => LabelledImages.Load(alone)).Message);

        var folder = new DatasetSpec { Kind = "folder", Path = dir.Path };
        Assert.Contains("no class labels", Assert.Throws<DatasetException>(() => LabelledImages.Files(folder)).Message);
    }

    [Fact]
    public void Cifar_labels_are_the_first_byte_of_each_record()
    {
        using var dir = new TempFolder();
        const int record = 3073;
        byte[] expected = [3, 0, 9, 7, 1];
        var bytes = new byte[expected.Length * record];
        for (var i = 0; i < expected.Length; i++)
        {
            bytes[i * record] = expected[i];
            bytes.AsSpan(i * record + 1, record - 1).Fill((byte)(40 * i));
        }
        File.WriteAllBytes(Path.Combine(dir.Path, "data_batch_1.bin"), bytes[..(3 * record)]);
        File.WriteAllBytes(Path.Combine(dir.Path, "data_batch_2.bin"), bytes[(3 * record)..]);
        using var data = LabelledImages.Load(new DatasetSpec { Kind = "cifar10", Path = dir.Path, ImageSize = 32 });
        Assert.Equal(expected, data.Labels);
        // Each label stays with its image: image i is filled with 40·i.
        for (var i = 0; i < expected.Length; i++)
            Assert.Equal(40 * i / 127.5f - 1f, data.Images.Data[i, 0, 0, 0].item<float>(), 5);
    }
}
