using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using GanCluster.Training.Data;
using GanCluster.Training.Models;
using GanCluster.Training.Spec;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Quality;

/// <summary>What a cached classifier records besides its weights.</summary>
/// <param name="Key">SHA-256 (hex) of the classifier version, image size and the dataset files' contents.</param>
/// <param name="Accuracy">Share of held-out real images (never trained on) classified as their label.</param>
/// <param name="Reference">The classifier's view of real training images: what generated images are compared with.</param>
public sealed record ClassifierInfo(int Version, string Key, string DatasetKind, int ImageSize, int Channels, int TrainImages, int HeldOutImages,
    double Accuracy, double TrainSeconds, DateTimeOffset TrainedAt, FeatureStats Reference);

/// <summary>
/// A small classifier trained once per dataset on its real labelled images, whose penultimate features and class
/// probabilities score generated images (<see cref="ImageQuality"/>): a multilayer perceptron, pixels → 256 → 64 (the
/// features, after ReLU) → 10 logits (64-pixel images averaged to 32 first). No convolutions: this project runs libtorch's
/// own CPU convolutions (oneDNN is off, see DEVELOPERS.md), and a two-convolution CNN trained at ~100 images/s on 2 shared
/// cores (4.4 minutes for 10,000 MNIST digits), the MLP at thousands. It runs on the CPU whatever the run's device.
/// Cached under <see cref="CacheDir"/> by a SHA-256 of the dataset's files, so every run and <c>eval</c> of the same data
/// reuses it.
/// </summary>
public sealed class QualityClassifier : IDisposable
{
    /// <summary>Bump when the architecture, the training or the reference statistics change: old cache files then miss.</summary>
    public const int Version = 2;
    public const int FeatureDim = 64;
    const int Hidden = 256;
    public const string CacheVariable = "GANCLUSTER_CACHE";
    const int TrainBatch = 64, EvalBatch = 500, Epochs = 6, MinSteps = 400, MaxSteps = 5000, MaxReferenceImages = 10_000;
    const double LearningRate = 1e-3;
    const ulong SplitSeed = 0x5EED_0001, InitSeed = 0x5EED_0002;
    static readonly byte[] Magic = "GCQC"u8.ToArray();

    readonly Sequential _body;   // image → 64 features (after ReLU)
    readonly Linear _head;       // features → 10 logits

    QualityClassifier(int channels, int imageSize)
    {
        // 64-pixel images are averaged down to 32 first: the same information for a classifier, a quarter of the weights.
        var side = imageSize > 32 ? imageSize / 2 : imageSize;
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        if (side != imageSize) layers.Add(("pool", nn.AvgPool2d(2)));
        layers.Add(("flat", nn.Flatten()));
        layers.Add(("fc1", nn.Linear(channels * side * side, Hidden)));
        layers.Add(("relu1", nn.ReLU()));
        layers.Add(("fc2", nn.Linear(Hidden, FeatureDim)));
        layers.Add(("relu2", nn.ReLU()));
        _body = nn.Sequential(layers);
        _head = nn.Linear(FeatureDim, LabelledImages.Classes);
    }

    public ClassifierInfo Info { get; private set; } = null!;
    /// <summary>Whether this instance was read from the cache (false: trained by this call).</summary>
    public bool FromCache { get; private set; }
    /// <summary>The cache file it was read from or written to.</summary>
    public string CachePath { get; private set; } = "";

    /// <summary><c>$GANCLUSTER_CACHE/classifiers</c>, else <c>$XDG_CACHE_HOME/gancluster/classifiers</c>, else <c>~/.cache/gancluster/classifiers</c>.</summary>
    public static string CacheDir()
    {
        static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        if (Env(CacheVariable) is { } configured) return Path.Combine(configured, "classifiers");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var root = Env("XDG_CACHE_HOME") ?? (string.IsNullOrEmpty(home) ? Path.GetTempPath() : Path.Combine(home, ".cache"));
        return Path.Combine(root, "gancluster", "classifiers");
    }

    /// <summary>The cache key: SHA-256 of the classifier version, the image size and every data file's bytes, in order.</summary>
    public static string Key(DatasetSpec d)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"gancluster quality classifier v{Version}\n{d.Kind}\n{d.ImageSize}\n{d.ResolvedChannels}\n"));
        foreach (var file in LabelledImages.Files(d))
        {
            using var fs = Open(file);
            sha.AppendData(SHA256.HashData(fs));
        }
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>
    /// The classifier of <paramref name="d"/>: from the cache when its key is there, else trained on the labelled images
    /// (held-out accuracy logged) and written to the cache through a private temporary file and a rename, since several
    /// processes may train the same one at once (each writes a whole, valid file; the last rename wins).
    /// </summary>
    /// <param name="cacheDir">The folder of cache files (default <see cref="CacheDir"/>).</param>
    public static QualityClassifier ForDataset(DatasetSpec d, TextWriter log, string? cacheDir = null)
    {
        var dir = cacheDir ?? CacheDir();
        var key = Key(d);
        var path = Path.Combine(dir, key + ".classifier");
        if (File.Exists(path))
        {
            try
            {
                var cached = Read(path, d.ResolvedChannels);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"    quality classifier: cached ({path}), held-out accuracy {cached.Info.Accuracy:P1} of {cached.Info.HeldOutImages:N0} real images"));
                return cached;
            }
            catch (Exception e)   // a cache that cannot be read (torn, older format, other libtorch) is trained again
            {
                log.WriteLine($"    quality classifier: cache file {path} cannot be read ({e.Message}); training a new one");
            }
        }
        log.WriteLine($"    quality classifier: none cached for this data; training one ({dir})");
        using var data = LabelledImages.Load(d);
        var trained = Train(data, d, key, log);
        try
        {
            Directory.CreateDirectory(dir);
            var tmp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            trained.Write(tmp);
            File.Move(tmp, path, overwrite: true);
            trained.CachePath = path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Scoring still works; only the next process trains again.
            log.WriteLine($"    quality classifier: could not be cached in {dir} ({e.Message})");
        }
        return trained;
    }

    /// <summary>Trains on all but a held-out tenth of <paramref name="data"/> (a seeded split), then measures accuracy on that tenth.</summary>
    public static QualityClassifier Train(LabelledImages data, DatasetSpec d, string key, TextWriter log)
    {
        var clock = Stopwatch.StartNew();
        var images = data.Images.Data;
        if (images.device.type != DeviceType.CPU) throw new ArgumentException("the classifier trains on CPU tensors");
        var n = data.Images.Count;
        if (n < 20) throw new DatasetException(d.Path ?? "", $"{n} labelled images are too few to train the quality classifier (at least 20)");
        var channels = (int)images.shape[1];
        var model = new QualityClassifier(channels, (int)images.shape[2]);
        model.InitWeights();
        using var labels = tensor(data.Labels.Select(l => (long)l).ToArray(), ScalarType.Int64);
        var (train, heldOut) = Split(n);
        var steps = Math.Clamp((int)Math.Ceiling((double)Epochs * train.Length / TrainBatch), MinSteps, MaxSteps);

        var parameters = model._body.parameters().Concat(model._head.parameters()).ToList();
        using var opt = optim.Adam(parameters, LearningRate);
        using var shuffle = new Generator(SplitSeed + 1);
        long[] order = [];
        var at = 0;
        double lastLoss = 0;
        for (var step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            if (at + TrainBatch > order.Length)
            {
                // A new epoch: a fresh order of the training part (a short last batch is skipped).
                order = randperm(train.Length, ScalarType.Int64, CPU, generator: shuffle).data<long>().Select(i => train[i]).ToArray();
                at = 0;
            }
            var idx = tensor(order.AsSpan(at, Math.Min(TrainBatch, order.Length)).ToArray());
            at += TrainBatch;
            opt.zero_grad();
            var logits = model._head.forward(model._body.forward(images.index_select(0, idx)));
            var loss = nn.functional.cross_entropy(logits, labels.index_select(0, idx));
            loss.backward();
            opt.step();
            if (step == steps - 1) lastLoss = loss.item<float>();
        }

        // Held-out accuracy, and the reference statistics from (up to 10,000 of) the images it trained on.
        long correct = 0;
        using (no_grad())
        {
            for (var i = 0; i < heldOut.Length; i += EvalBatch)
            {
                using var scope = NewDisposeScope();
                var idx = tensor(heldOut.AsSpan(i, Math.Min(EvalBatch, heldOut.Length - i)).ToArray());
                var predicted = model._head.forward(model._body.forward(images.index_select(0, idx))).argmax(1);
                correct += predicted.eq(labels.index_select(0, idx)).sum().item<long>();
            }
        }
        FeatureStats reference;
        using (var refIdx = tensor(train.Take(MaxReferenceImages).ToArray()))
        using (var refImages = images.index_select(0, refIdx))
            reference = model.Summarize(refImages);
        var accuracy = (double)correct / heldOut.Length;
        model.Info = new ClassifierInfo(Version, key, d.Kind, d.ImageSize, channels, train.Length, heldOut.Length, accuracy,
            clock.Elapsed.TotalSeconds, DateTimeOffset.UtcNow, reference);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    quality classifier: trained on {train.Length:N0} real images ({steps} steps of {TrainBatch}, last loss {lastLoss:F3}) in {clock.Elapsed.TotalSeconds:F1} s; held-out accuracy {accuracy:P1} of {heldOut.Length:N0}"));
        return model;
    }

    /// <summary>The seeded split of n images: (training indices, held-out indices); a tenth (at least 1) is held out.</summary>
    public static (long[] Train, long[] HeldOut) Split(int n)
    {
        using var gen = new Generator(SplitSeed);
        using var perm = randperm(n, ScalarType.Int64, CPU, generator: gen);
        var all = perm.data<long>().ToArray();
        var held = Math.Max(1, n / 10);
        return (all[held..], all[..held]);
    }

    /// <summary>Features, class shares and confident share of images [n, C, S, S] (CPU, in [−1, 1]), in batches.</summary>
    public FeatureStats Summarize(Tensor images)
    {
        IEnumerable<Tensor> Batches()
        {
            for (long i = 0; i < images.shape[0]; i += EvalBatch)
                yield return images.narrow(0, i, Math.Min(EvalBatch, images.shape[0] - i));
        }
        return Summarize(Batches());
    }

    /// <summary>As <see cref="Summarize(Tensor)"/> over a stream of batches; each batch is disposed once used.</summary>
    public FeatureStats Summarize(IEnumerable<Tensor> batches)
    {
        var features = new List<Tensor>();
        var counts = new long[LabelledImages.Classes];
        long confident = 0, n = 0;
        try
        {
            using var _ = no_grad();
            using Scalar threshold = ImageQuality.ConfidenceThreshold;
            foreach (var batch in batches)
            {
                using (batch)
                using (var scope = NewDisposeScope())
                {
                    var expected = Info?.Channels ?? (int)batch.shape[1];
                    if (batch.dim() != 4 || batch.shape[1] != expected)
                        throw new ArgumentException($"images of shape [{string.Join(", ", batch.shape)}]; the classifier takes [n, {expected}, S, S]");
                    var f = _body.forward(batch.to(CPU).to_type(ScalarType.Float32));
                    var p = nn.functional.softmax(_head.forward(f), 1);
                    var (top, cls) = p.max(1);
                    confident += top.gt(threshold).sum().item<long>();
                    foreach (var c in cls.data<long>()) counts[c]++;
                    n += batch.shape[0];
                    features.Add(f.to_type(ScalarType.Float64).DetachFromDisposeScope());   // owned by the list
                }
            }
            if (n < 2) throw new ArgumentException($"at least 2 images are needed for a covariance (got {n})");
            using var all = cat(features, 0);
            var (mean, cov) = ImageQuality.MeanAndCovariance(all);
            return new FeatureStats(mean, cov, counts.Select(c => (double)c / n).ToArray(), (double)confident / n, (int)n);
        }
        finally
        {
            foreach (var f in features) f.Dispose();
        }
    }

    /// <summary>Predicted class of each image (for tests and checks).</summary>
    public long[] Predict(Tensor images)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        return _head.forward(_body.forward(images)).argmax(1).data<long>().ToArray();
    }

    void InitWeights()
    {
        // From a private generator: the same classifier for the same data, whatever else uses torch's global RNG.
        using var gen = new Generator(InitSeed);
        foreach (var (name, p) in _body.named_parameters().Concat(_head.named_parameters()))
        {
            if (name.EndsWith("bias", StringComparison.Ordinal))
            {
                using var _ = no_grad();
                p.zero_();
                continue;
            }
            var fanIn = p.shape[1..].Aggregate(1L, (a, b) => a * b);
            var bound = Math.Sqrt(6.0 / fanIn);   // He uniform, for the ReLUs
            SeededInit.Uniform(p, -bound, bound, gen);
        }
    }

    /// <summary>The cache file: "GCQC", the version, the info as JSON (length-prefixed), then the body's and the head's weights.</summary>
    void Write(string path)
    {
        using var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        using (var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true))
        {
            var json = JsonSerializer.SerializeToUtf8Bytes(Info, RunSpec.Json);
            w.Write(Magic);
            w.Write(Version);
            w.Write(json.Length);
            w.Write(json);
            _body.save(w);
            _head.save(w);
        }
        fs.Flush(flushToDisk: true);
    }

    static QualityClassifier Read(string path, int channels)
    {
        using var fs = Open(path);
        using var r = new BinaryReader(fs, Encoding.UTF8);
        if (!r.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic)) throw new InvalidDataException("not a classifier cache file");
        var version = r.ReadInt32();
        if (version != Version) throw new InvalidDataException($"classifier version {version}, this build uses {Version}");
        var length = r.ReadInt32();
        if (length is <= 0 or > 64 << 20) throw new InvalidDataException($"bad header length {length}");
        var info = JsonSerializer.Deserialize<ClassifierInfo>(r.ReadBytes(length), RunSpec.Json) ?? throw new InvalidDataException("empty header");
        if (info.Key != Path.GetFileNameWithoutExtension(path)) throw new InvalidDataException($"holds the classifier of key {info.Key}");
        if (info.Channels != channels) throw new InvalidDataException($"made for {info.Channels} channels, the data has {channels}");
        var model = new QualityClassifier(channels, info.ImageSize);
        model._body.load(r);
        model._head.load(r);
        model.Info = info;
        model.FromCache = true;
        model.CachePath = path;
        return model;
    }

    static FileStream Open(string file)
    {
        try { return new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { throw new DatasetException(file, "does not exist"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new DatasetException(file, $"cannot be read: {e.Message}"); }
    }

    public void Dispose()
    {
        _body.Dispose();
        _head.Dispose();
    }
}
