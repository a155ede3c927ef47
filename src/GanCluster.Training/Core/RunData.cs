using GanCluster.Training.Data;
using GanCluster.Training.Spec;

namespace GanCluster.Training.Core;

/// <summary>Turns a run spec's dataset section into an in-memory <see cref="SampleSet"/>.</summary>
public static class RunData
{
    public static SampleSet Load(DatasetSpec d, long seed) => d.Kind switch
    {
        "ring8" => SyntheticDatasets.Ring8(d.Size, seed),
        "grid25" => SyntheticDatasets.Grid25(d.Size, seed),
        "mnist" or "fashion-mnist" => ImageDatasets.LoadIdx(Require(d), d.ImageSize),
        "cifar10" => ImageDatasets.LoadCifar10(Require(d), d.ImageSize),
        "folder" => ImageDatasets.LoadFolder(Require(d), d.ImageSize, d.ResolvedChannels,
            d.Resize == "none" ? FolderResize.None : FolderResize.CenterCrop),
        _ => throw new ArgumentOutOfRangeException(nameof(d), d.Kind, "unknown dataset kind"),
    };

    /// <summary>The mixture a 2-D dataset was drawn from (for mode-coverage checks); null for image data.</summary>
    public static (IReadOnlyList<(float X, float Y)> Modes, float Std)? Mixture(string kind) => kind switch
    {
        "ring8" => (SyntheticDatasets.Ring8Modes, SyntheticDatasets.Ring8Std),
        "grid25" => (SyntheticDatasets.Grid25Modes, SyntheticDatasets.Grid25Std),
        _ => null,
    };

    static string Require(DatasetSpec d) =>
        d.Path ?? throw new DatasetException("(dataset.path)", $"dataset kind {d.Kind} needs a path");
}
