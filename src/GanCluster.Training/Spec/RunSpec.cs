using System.Text.Json;
using System.Text.Json.Serialization;

namespace GanCluster.Training.Spec;

/// <summary>A training run as submitted: the JSON run spec (field names are part of the user-facing format).</summary>
public sealed record RunSpec
{
    public string Name { get; init; } = "run";
    public DatasetSpec Dataset { get; init; } = new();
    public ModelSpec Model { get; init; } = new();
    public TrainingSpec Training { get; init; } = new();
    public CheckpointSpec Checkpoint { get; init; } = new();
    /// <summary>Quality scores during training (image runs on labelled data); <c>gancluster eval</c> scores any run afterwards.</summary>
    public EvaluationSpec Evaluation { get; init; } = new();
    /// <summary>Output folder: metrics.csv, samples/, checkpoints/. Relative paths are relative to the working directory.</summary>
    public string Output { get; init; } = "";

    [JsonIgnore] public string ResolvedOutput => string.IsNullOrWhiteSpace(Output) ? Path.Combine("runs", Name) : Output;

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>The built-in default: the 8-Gaussian ring with the MLP GAN, about 30 s on 2 CPU cores.</summary>
    public static RunSpec BuiltInDefault => new()
    {
        Name = "ring8-default",
        Dataset = new DatasetSpec { Kind = "ring8" },
        Model = new ModelSpec { Kind = "mlp", Nz = 8, Ngf = 128, Ndf = 128 },
        Training = new TrainingSpec { Iterations = 6000, BatchSize = 256, LrD = 1e-3, LrG = 1e-3, Beta1 = 0.5, LrDecay = "linear", Seed = 3, LogEvery = 500 },
        Checkpoint = new CheckpointSpec { Every = 2000, Keep = 3 },
        Output = "runs/ring8-default",
    };
}

public sealed record DatasetSpec
{
    /// <summary>ring8 | grid25 | mnist | fashion-mnist | cifar10 | folder.</summary>
    public string Kind { get; init; } = "ring8";
    /// <summary>File or folder for mnist, fashion-mnist, cifar10 and folder.</summary>
    public string? Path { get; init; }
    /// <summary>28, 32 or 64 for image datasets.</summary>
    public int ImageSize { get; init; } = 28;
    /// <summary>1 or 3, for <c>folder</c> (MNIST is 1, CIFAR-10 is 3).</summary>
    public int? Channels { get; init; }
    /// <summary>For <c>folder</c>: <c>crop</c> (centre-crop and resize, default) or <c>none</c> (every image must be imageSize²).</summary>
    public string Resize { get; init; } = "crop";
    /// <summary>Number of points drawn for ring8 and grid25.</summary>
    public int Size { get; init; } = 100_000;
    /// <summary>
    /// Where the data lives on a GPU run: <c>auto</c> (on the GPU when it fits in half its free memory, else host),
    /// <c>device</c> (on the GPU, or a clear error) or <c>host</c> (host memory, batches copied through pinned memory).
    /// </summary>
    public string Placement { get; init; } = "auto";

    [JsonIgnore] public bool IsSynthetic => Kind is "ring8" or "grid25";

    [JsonIgnore] public int ResolvedChannels => Kind switch
    {
        "mnist" or "fashion-mnist" => 1,
        "cifar10" => 3,
        "folder" => Channels ?? 3,
        _ => 0,
    };
}

public sealed record ModelSpec
{
    /// <summary>mlp (2-D data) or dcgan (images).</summary>
    public string Kind { get; init; } = "dcgan";
    /// <summary>Noise size; default 100 for dcgan, 8 for mlp.</summary>
    public int? Nz { get; init; }
    /// <summary>G width: feature maps in dcgan, hidden units in mlp; default 64 for dcgan, 128 for mlp.</summary>
    public int? Ngf { get; init; }
    /// <summary>D width, as <see cref="Ngf"/>.</summary>
    public int? Ndf { get; init; }

    [JsonIgnore] public int ResolvedNz => Nz ?? (Kind == "mlp" ? 8 : 100);
    [JsonIgnore] public int ResolvedNgf => Ngf ?? (Kind == "mlp" ? 128 : 64);
    [JsonIgnore] public int ResolvedNdf => Ndf ?? (Kind == "mlp" ? 128 : 64);
}

public sealed record TrainingSpec
{
    /// <summary>Discriminator updates per generator update (Goodfellow et al. 2014, Algorithm 1).</summary>
    public int K { get; init; } = 1;
    public int Iterations { get; init; } = 2000;
    /// <summary>The global minibatch m.</summary>
    public int BatchSize { get; init; } = 128;
    public double LrD { get; init; } = 2e-4;
    public double LrG { get; init; } = 2e-4;
    /// <summary>adam or sgd, for D and for G.</summary>
    public string OptimizerD { get; init; } = "adam";
    public string OptimizerG { get; init; } = "adam";
    /// <summary>Adam's betas (both networks).</summary>
    public double Beta1 { get; init; } = 0.5;
    public double Beta2 { get; init; } = 0.999;
    /// <summary>SGD momentum for D and for G.</summary>
    public double MomentumD { get; init; } = 0.9;
    public double MomentumG { get; init; } = 0.9;
    /// <summary>non-saturating (G maximises log D(G(z))) or minimax (G minimises log(1 − D(G(z)))).</summary>
    public string Loss { get; init; } = "non-saturating";
    /// <summary>
    /// Noise for the G update: <c>reuse</c> takes the last D sub-step's fake batch (as pytorch/examples dcgan;
    /// G has not changed since, so it is a sample of the same distribution, and it saves a G forward pass);
    /// <c>fresh</c> draws new noise, as written in Algorithm 1.
    /// </summary>
    public string GNoise { get; init; } = "reuse";
    public long Seed { get; init; } = 1;
    /// <summary>none (constant lrD / lrG) or linear (from lr at iteration 0 down to 0 at the last iteration).</summary>
    public string LrDecay { get; init; } = "none";

    /// <summary>The learning-rate factor for an iteration (0-based): 1 without decay.</summary>
    public double LrFactor(long iteration) => LrDecay == "linear" ? Math.Max(0.0, 1.0 - (double)iteration / Iterations) : 1.0;
    /// <summary>Consecutive updates skipped for non-finite losses or gradients after which the run ends as diverged.</summary>
    public int MaxNonFiniteSkips { get; init; } = 20;
    /// <summary>Iterations between console lines and metrics.csv rows.</summary>
    public int LogEvery { get; init; } = 50;
    /// <summary>Iterations between sample grids; 0 = with each checkpoint.</summary>
    public int SampleEvery { get; init; }
    /// <summary>
    /// When workers join or leave a cluster run: <c>global</c> keeps <see cref="BatchSize"/> as the global batch and
    /// resizes per-worker batches (the GAN's dynamics do not change); <c>per-worker</c> keeps each worker's batch
    /// (BatchSize / the first world size), so the global batch grows and shrinks with the cluster.
    /// </summary>
    public string BatchMode { get; init; } = "global";
    /// <summary>Worker failures (lost or failed steps) tolerated within any hour of a cluster run before it ends as failed.</summary>
    public int MaxFailuresPerHour { get; init; } = 5;
    /// <summary>
    /// <c>fp32</c> (default) or <c>bf16</c>: convolutions and linear layers run forward and backward in bfloat16 from a
    /// bf16 copy of the fp32 master weights; BatchNorm, the losses, the all-reduce and the optimizer stay fp32, and so do
    /// checkpoints (a run may change precision when it resumes).
    /// </summary>
    public string Precision { get; init; } = "fp32";
    /// <summary>
    /// <c>contiguous</c> (default) or <c>channels_last</c>: DCGAN convolution weights and activations in NHWC strides
    /// (the NCHW shape stays), which cuDNN's fastest bf16 kernels want. Only for dcgan.
    /// </summary>
    public string MemoryFormat { get; init; } = "contiguous";
    /// <summary>
    /// <c>fp32</c> (default) or <c>bf16</c>: how a cluster run's gradients travel between ring neighbours. bf16 halves the
    /// bytes; each hop still sums in fp32, and the result is rounded to bf16 once more before it is shared.
    /// </summary>
    public string WirePrecision { get; init; } = "fp32";
}

public sealed record CheckpointSpec
{
    public int Every { get; init; } = 500;
    public int Keep { get; init; } = 3;
    /// <summary>
    /// Also keep the best checkpoint so far besides the newest <see cref="Keep"/>: lowest Fréchet distance for image runs
    /// (needs <c>evaluation.quality</c> <c>saves</c>), most modes then most high-quality samples for ring8/grid25.
    /// </summary>
    public bool KeepBest { get; init; }
}

public sealed record EvaluationSpec
{
    /// <summary>
    /// <c>off</c> (default) or <c>saves</c>: score the generator at every samples/checkpoint save with the dataset's
    /// classifier (Fréchet distance, class KL, confident share), logged and written to metrics.csv. Labelled image
    /// datasets only (mnist, fashion-mnist, cifar10); ring8/grid25 get mode coverage at every sample save anyway.
    /// </summary>
    public string Quality { get; init; } = "off";
    /// <summary>Generated images per score (2,000): more is steadier and slower.</summary>
    public int Samples { get; init; } = 2000;
}
