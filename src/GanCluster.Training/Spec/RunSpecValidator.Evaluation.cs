namespace GanCluster.Training.Spec;

public static partial class RunSpecValidator
{
    /// <summary>Datasets whose files carry class labels, so a classifier can score generated images.</summary>
    public static readonly IReadOnlyList<string> LabelledDatasetKinds = ["mnist", "fashion-mnist", "cifar10"];

    /// <summary>Fewest and most images per quality score: the feature covariance needs well over its 64 dimensions.</summary>
    public const int MinQualitySamples = 200, MaxQualitySamples = 50_000;

    static void ValidateEvaluation(RunSpec s, List<SpecError> e)
    {
        var q = s.Evaluation;
        var kind = s.Dataset.Kind;
        if (q.Quality is not ("off" or "saves"))
            e.Add(new SpecError("evaluation.quality", $"must be off or saves (got \"{q.Quality}\")"));
        else if (q.Quality == "saves" && !LabelledDatasetKinds.Contains(kind))
            e.Add(new SpecError("evaluation.quality", s.Dataset.IsSynthetic
                ? $"saves is for labelled image datasets ({string.Join(", ", LabelledDatasetKinds)}); {kind} runs get mode coverage at every sample save without it (use off)"
                : $"saves needs labelled images ({string.Join(", ", LabelledDatasetKinds)}); {kind} has no labels to train the scoring classifier on (use off)"));
        if (q.Samples is < MinQualitySamples or > MaxQualitySamples)
            e.Add(new SpecError("evaluation.samples", $"must be {MinQualitySamples} to {MaxQualitySamples:N0} generated images (got {q.Samples})"));
        if (s.Checkpoint.KeepBest && !s.Dataset.IsSynthetic && !(q.Quality == "saves" && LabelledDatasetKinds.Contains(kind)))
            e.Add(new SpecError("checkpoint.keepBest", LabelledDatasetKinds.Contains(kind)
                ? "needs evaluation.quality saves for an image run: without scores there is no best checkpoint"
                : $"has nothing to rank a {kind} run by: only ring8/grid25 (mode coverage) and labelled image datasets with evaluation.quality saves are scored"));
    }
}
