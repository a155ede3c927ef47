using System.CommandLine;
using System.Globalization;
using GanCluster.Training.Core;
using GanCluster.Training.Output;
using GanCluster.Training.Quality;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Cli;

/// <summary>
/// <c>gancluster eval --run DIR [--count N] [--seed S] [--real]</c>: the quality of a run's newest valid checkpoint. Image
/// runs on labelled data: the dataset classifier's held-out accuracy, then the Fréchet distance of its features, the class
/// KL and the confident share of N generated images. 2-D runs: mode coverage of N samples (the same measure as training's).
/// </summary>
static class EvalCommand
{
    public static Command Build()
    {
        var run = new Option<string>("--run") { Description = "The run's output folder", Required = true };
        var count = new Option<int>("--count") { Description = "Generated images (or 2-D points) to score", DefaultValueFactory = _ => ImageQuality.DefaultCount };
        var seed = new Option<long>("--seed") { Description = "Noise seed (the default is the one scores at saves use)", DefaultValueFactory = _ => ImageQuality.DefaultSeed };
        var real = new Option<bool>("--real") { Description = "Score held-out real images instead of G's (the floor a perfect generator would reach at this count)" };
        var device = Common.Device();
        var libDir = Common.TorchLibDir();
        var cmd = new Command("eval", "Score a run's newest checkpoint: image quality by the dataset's classifier, or 2-D mode coverage")
            { run, count, seed, real, device, libDir };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var dir = r.GetValue(run)!;
            var n = r.GetValue(count);
            if (!Directory.Exists(dir)) throw new UsageException($"--run {dir}: no such folder");
            var checkpoint = CheckpointStore.LatestValid(dir, out var skipped);
            foreach (var s in skipped) Console.Error.WriteLine($"warning: skipping checkpoint {s}");
            if (checkpoint is null)
                throw new UsageException($"--run {dir}: no valid checkpoint under {CheckpointStore.Folder(dir)}; a run is scored from its checkpoints");
            var state = CheckpointStore.ReadState(checkpoint);
            var spec = state.Spec;
            var image = spec.Model.Kind == "dcgan";
            if (image && LabelledImagesWhy(spec) is { } why)
                throw new UsageException($"--run {dir}: cannot score this run: {why}. Image runs are scored by a classifier trained on labelled data ({string.Join(", ", RunSpecValidator.LabelledDatasetKinds)}); judge its samples by eye (gancluster sample)");
            if (image && n < RunSpecValidator.MinQualitySamples)
                throw new UsageException($"--count must be at least {RunSpecValidator.MinQualitySamples} for an image score: the feature covariance has {QualityClassifier.FeatureDim} dimensions (got {n})");
            if (n < 1) throw new UsageException($"--count must be at least 1 (got {n})");

            var (_, dev) = Common.Start(r.GetValue(device)!, r.GetValue(libDir));
            Console.WriteLine($"checkpoint: {checkpoint} (iteration {state.Iteration})");
            if (!image)
            {
                // 2-D runs: the mode coverage training reports, on N points of this checkpoint.
                if (RunData.Mixture(spec.Dataset.Kind) is not { } mixture)
                    throw new UsageException($"--run {dir}: dataset kind {spec.Dataset.Kind} has no known modes to score against");
                if (r.GetValue(real)) throw new UsageException("--real is for image runs; 2-D real points cover every mode by construction");
                using var replica2 = Restore(spec, dev, checkpoint, state);
                using var gen2 = new Generator((ulong)r.GetValue(seed));
                using var scope = NewDisposeScope();
                var xy = replica2.Generate(replica2.SampleNoise(n, gen2)).cpu().contiguous().data<float>().ToArray();
                Console.WriteLine($"mode quality at iteration {state.Iteration}: {ModeQuality.Evaluate(xy, mixture.Modes, mixture.Std)}");
                return 0;
            }

            using var classifier = QualityClassifier.ForDataset(spec.Dataset, Console.Out);
            var info = classifier.Info;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"classifier: held-out accuracy {info.Accuracy:P1} of {info.HeldOutImages:N0} real images (trained on {info.TrainImages:N0}; reference: {info.Reference.Count:N0} real images)"));
            if (r.GetValue(real))
            {
                using var data = LabelledImages.Load(spec.Dataset);
                var (_, heldOut) = QualityClassifier.Split(data.Images.Count);
                using var idx = tensor(heldOut.Take(n).ToArray());
                using var images = data.Images.Data.index_select(0, idx);
                var q = ImageQuality.Compare(classifier.Summarize(images), info.Reference);
                Console.WriteLine($"real held-out images: {q}");
                if (q.Samples < n) Console.WriteLine($"    (only {q.Samples} real images are held out, not {n})");
                return 0;
            }
            using var replica = Restore(spec, dev, checkpoint, state);
            var score = ImageQuality.Score(classifier, replica, n, r.GetValue(seed));
            Console.WriteLine($"quality at iteration {state.Iteration}: {score}");
            return 0;
        }));
        return cmd;
    }

    static string? LabelledImagesWhy(RunSpec spec) => LabelledImages.WhyUnlabelled(spec.Dataset);

    static GanReplica Restore(RunSpec spec, Device device, string checkpoint, CheckpointState state)
    {
        var replica = new GanReplica(spec, device, noiseSeed: 0);
        CheckpointStore.Restore(checkpoint, replica, state, optimizers: false);
        return replica;
    }
}
