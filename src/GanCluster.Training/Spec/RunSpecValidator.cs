using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using GanCluster.Training.Models;

namespace GanCluster.Training.Spec;

/// <summary>One invalid field: its JSON path (e.g. <c>training.lrD</c>) and why.</summary>
public sealed record SpecError(string Field, string Reason)
{
    public override string ToString() => $"{Field}: {Reason}";
}

/// <summary>Raised when a run spec is invalid; <see cref="Errors"/> lists every problem, not just the first.</summary>
public sealed class InvalidRunSpecException(string source, IReadOnlyList<SpecError> errors)
    : Exception($"Invalid run spec {source}:\n" + string.Join("\n", errors.Select(e => $"  - {e}")))
{
    public IReadOnlyList<SpecError> Errors { get; } = errors;
}

public static partial class RunSpecValidator
{
    static readonly string[] DatasetKinds = ["ring8", "grid25", "mnist", "fashion-mnist", "cifar10", "folder"];
    static readonly string[] ModelKinds = ["mlp", "dcgan"];
    static readonly string[] Losses = ["non-saturating", "minimax"];
    static readonly string[] Optimizers = ["adam", "sgd"];

    /// <summary>Largest k: Goodfellow et al. use k = 1; a k in the thousands makes one iteration take hours.</summary>
    public const int MaxK = 100;
    /// <summary>Largest spec in UTF-8 bytes: a spec is a few hundred bytes, and a submitted one must fit Akka's 128,000-byte frame.</summary>
    public const int MaxSpecBytes = 64 * 1024;

    /// <summary>Parses and validates a spec file; throws <see cref="InvalidRunSpecException"/> listing every problem.</summary>
    public static RunSpec Load(string path)
    {
        if (!File.Exists(path))
            throw new InvalidRunSpecException(path, [new SpecError("(file)", "does not exist")]);
        return Parse(File.ReadAllText(path), path);
    }

    /// <param name="checkPaths">false where the data lives on other machines (the seed validating for its workers).</param>
    public static RunSpec Parse(string json, string source = "(inline)", bool checkPaths = true, double memoryLimitBytes = ModelMemory.DefaultLimitBytes)
    {
        var errors = new List<SpecError>();
        var size = System.Text.Encoding.UTF8.GetByteCount(json);
        if (size > MaxSpecBytes)
            throw new InvalidRunSpecException(source, [new SpecError("(spec)", $"is {size:N0} bytes; a run spec may be at most {MaxSpecBytes:N0} bytes")]);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new InvalidRunSpecException(source, [new SpecError("(json)", $"not valid JSON: {e.Message}")]);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new InvalidRunSpecException(source, [new SpecError("(json)", "the spec must be a JSON object")]);
            // Unknown or mistyped fields are reported per field rather than failing on the first.
            CheckShape(doc.RootElement, typeof(RunSpec), "", errors);
        }
        if (errors.Count > 0) throw new InvalidRunSpecException(source, errors);

        RunSpec spec;
        try
        {
            spec = JsonSerializer.Deserialize<RunSpec>(json, RunSpec.Json)
                   ?? throw new InvalidRunSpecException(source, [new SpecError("(json)", "the spec must be a JSON object")]);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            // CheckShape should have caught it; never let a spec take down whoever parses it.
            throw new InvalidRunSpecException(source, [new SpecError("(json)", $"could not be read: {e.Message}")]);
        }
        var invalid = Validate(spec, checkPaths, memoryLimitBytes);
        if (invalid.Count > 0) throw new InvalidRunSpecException(source, invalid);
        return spec;
    }

    static readonly NullabilityInfoContext Nullability = new();

    static void CheckShape(JsonElement element, Type type, string prefix, List<SpecError> errors)
    {
        // Names as the deserializer matches them (exactly): "LrD" would otherwise pass here and be ignored there.
        var props = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.GetCustomAttribute<System.Text.Json.Serialization.JsonIgnoreAttribute>() is null)
            .ToDictionary(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name), StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var field in element.EnumerateObject())
        {
            var path = prefix.Length == 0 ? field.Name : $"{prefix}.{field.Name}";
            if (!seen.Add(field.Name))
            {
                // System.Text.Json keeps the last one silently: which value was meant?
                errors.Add(new SpecError(path, "is given more than once"));
                continue;
            }
            if (!props.TryGetValue(field.Name, out var prop))
            {
                var near = props.Keys.FirstOrDefault(k => string.Equals(k, field.Name, StringComparison.OrdinalIgnoreCase));
                errors.Add(new SpecError(path, near is not null ? $"unknown field (did you mean {near}?)" : $"unknown field (known: {string.Join(", ", props.Keys)})"));
                continue;
            }
            var t = Nullable.GetUnderlyingType(prop.PropertyType) ?? prop.PropertyType;
            var v = field.Value;
            var nullable = Nullable.GetUnderlyingType(prop.PropertyType) is not null
                           || !t.IsValueType && Nullability.Create(prop).WriteState == NullabilityState.Nullable;
            if (v.ValueKind == JsonValueKind.Null && !nullable)
            {
                errors.Add(new SpecError(path, t.IsClass && t != typeof(string) ? "must be an object, not null (leave the field out for its defaults)" : $"must be {Describe(t)}, not null"));
                continue;
            }
            var ok = v.ValueKind == JsonValueKind.Null && nullable
                || t == typeof(string) && v.ValueKind == JsonValueKind.String
                || t == typeof(int) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out _)
                || t == typeof(long) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out _)
                || t == typeof(double) && v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var number) && double.IsFinite(number)
                || t == typeof(bool) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
                || t.IsClass && t != typeof(string) && v.ValueKind == JsonValueKind.Object;
            if (!ok)
            {
                errors.Add(new SpecError(path, $"expected {Describe(t)}, got {Render(v)}"));
                continue;
            }
            if (t.IsClass && t != typeof(string) && v.ValueKind == JsonValueKind.Object)
                CheckShape(v, t, path, errors);
        }
    }

    static string Describe(Type t) =>
        t == typeof(string) ? "a string" : t == typeof(int) || t == typeof(long) ? "an integer" : t == typeof(double) ? "a number" : t == typeof(bool) ? "true or false" : "an object";

    static string Render(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"\"{v.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        _ => v.GetRawText(),
    };

    /// <summary>Every semantic problem of a parsed spec (empty when valid). Paths must exist on this machine.</summary>
    /// <param name="memoryLimitBytes">The most memory a run may need by <see cref="ModelMemory.EstimateBytes"/>.</param>
    public static List<SpecError> Validate(RunSpec s, bool checkPaths = true, double memoryLimitBytes = ModelMemory.DefaultLimitBytes)
    {
        var e = new List<SpecError>();
        void Check(bool ok, string field, string reason)
        {
            if (!ok) e.Add(new SpecError(field, reason));
        }

        Check(!string.IsNullOrWhiteSpace(s.Name) && NameRegex().IsMatch(s.Name), "name",
            $"must be 1-64 letters, digits, '.', '_' or '-' (got \"{s.Name}\")");

        var d = s.Dataset;
        Check(DatasetKinds.Contains(d.Kind), "dataset.kind", $"must be one of {string.Join(", ", DatasetKinds)} (got \"{d.Kind}\")");
        if (DatasetKinds.Contains(d.Kind) && !d.IsSynthetic)
        {
            if (string.IsNullOrWhiteSpace(d.Path))
                e.Add(new SpecError("dataset.path", $"is required for dataset kind {d.Kind}"));
            else if (checkPaths)
                Check(File.Exists(d.Path) || Directory.Exists(d.Path), "dataset.path", $"{d.Path} does not exist");
        }
        // Checked for every kind: a value that is wrong but unused is still a mistake worth hearing about.
        Check(Dcgan.ImageSizes.Contains(d.ImageSize), "dataset.imageSize", $"must be 28, 32 or 64 (got {d.ImageSize})");
        if (d.Kind == "folder")
        {
            Check(d.Channels is null or 1 or 3, "dataset.channels", $"must be 1 or 3 (got {d.Channels})");
            Check(d.Resize is "crop" or "none", "dataset.resize", $"must be crop or none (got \"{d.Resize}\")");
        }
        Check(d.Placement is "auto" or "device" or "host", "dataset.placement", $"must be auto, device or host (got \"{d.Placement}\")");
        if (d.IsSynthetic) Check(d.Size >= 1, "dataset.size", $"must be at least 1 (got {d.Size})");

        var m = s.Model;
        Check(ModelKinds.Contains(m.Kind), "model.kind", $"must be mlp or dcgan (got \"{m.Kind}\")");
        if (m.Kind == "mlp" && DatasetKinds.Contains(d.Kind) && !d.IsSynthetic)
            e.Add(new SpecError("model.kind", $"mlp is for the 2-D datasets (ring8, grid25); use dcgan for {d.Kind}"));
        if (m.Kind == "dcgan" && d.IsSynthetic)
            e.Add(new SpecError("model.kind", $"dcgan is for image datasets; use mlp for {d.Kind}"));
        Check(m.Nz is null or >= 1, "model.nz", $"must be at least 1 (got {m.Nz})");
        Check(m.Ngf is null or >= 1, "model.ngf", $"must be at least 1 (got {m.Ngf})");
        Check(m.Ndf is null or >= 1, "model.ndf", $"must be at least 1 (got {m.Ndf})");

        var t = s.Training;
        Check(t.K is >= 1 and <= MaxK, "training.k", $"must be 1 to {MaxK} discriminator updates per generator update (got {t.K})");
        Check(t.Iterations >= 1, "training.iterations", $"must be at least 1 (got {t.Iterations})");
        Check(t.BatchSize >= 1, "training.batchSize", $"must be at least 1 (got {t.BatchSize})");
        if (d.IsSynthetic && t.BatchSize > d.Size)
            e.Add(new SpecError("training.batchSize", $"must not exceed dataset.size ({d.Size}) (got {t.BatchSize})"));
        Check(t.LrD > 0 && double.IsFinite(t.LrD), "training.lrD", $"must be a positive number (got {t.LrD})");
        Check(t.LrG > 0 && double.IsFinite(t.LrG), "training.lrG", $"must be a positive number (got {t.LrG})");
        Check(Optimizers.Contains(t.OptimizerD), "training.optimizerD", $"must be adam or sgd (got \"{t.OptimizerD}\")");
        Check(Optimizers.Contains(t.OptimizerG), "training.optimizerG", $"must be adam or sgd (got \"{t.OptimizerG}\")");
        Check(t.Beta1 is >= 0 and < 1, "training.beta1", $"must be in [0, 1) (got {t.Beta1})");
        Check(t.Beta2 is >= 0 and < 1, "training.beta2", $"must be in [0, 1) (got {t.Beta2})");
        Check(t.MomentumD is >= 0 and < 1, "training.momentumD", $"must be in [0, 1) (got {t.MomentumD})");
        Check(t.MomentumG is >= 0 and < 1, "training.momentumG", $"must be in [0, 1) (got {t.MomentumG})");
        Check(Losses.Contains(t.Loss), "training.loss", $"must be non-saturating or minimax (got \"{t.Loss}\")");
        Check(t.GNoise is "reuse" or "fresh", "training.gNoise", $"must be reuse or fresh (got \"{t.GNoise}\")");
        Check(t.LrDecay is "none" or "linear", "training.lrDecay", $"must be none or linear (got \"{t.LrDecay}\")");
        Check(t.BatchMode is "global" or "per-worker", "training.batchMode", $"must be global or per-worker (got \"{t.BatchMode}\")");
        Check(t.MaxFailuresPerHour >= 0, "training.maxFailuresPerHour", $"must be 0 or more (got {t.MaxFailuresPerHour})");
        Check(t.MaxNonFiniteSkips >= 1, "training.maxNonFiniteSkips", $"must be at least 1 (got {t.MaxNonFiniteSkips})");
        Check(t.LogEvery >= 1, "training.logEvery", $"must be at least 1 (got {t.LogEvery})");
        Check(t.Precision is "fp32" or "bf16", "training.precision", $"must be fp32 or bf16 (got \"{t.Precision}\")");
        Check(t.MemoryFormat is "contiguous" or "channels_last", "training.memoryFormat", $"must be contiguous or channels_last (got \"{t.MemoryFormat}\")");
        if (t.MemoryFormat == "channels_last" && m.Kind == "mlp")
            e.Add(new SpecError("training.memoryFormat", "channels_last is for dcgan's 4-D images; mlp has none (use contiguous)"));
        Check(t.WirePrecision is "fp32" or "bf16", "training.wirePrecision", $"must be fp32 or bf16 (got \"{t.WirePrecision}\")");
        Check(t.SampleEvery >= 0, "training.sampleEvery", $"must be 0 (with checkpoints) or more (got {t.SampleEvery})");

        Check(s.Checkpoint.Every >= 1, "checkpoint.every", $"must be at least 1 (got {s.Checkpoint.Every})");
        Check(s.Checkpoint.Keep >= 1, "checkpoint.keep", $"must be at least 1 (got {s.Checkpoint.Keep})");
        ValidateEvaluation(s, e);

        // Sizes last, and only when the shape of the model is known: a bound, not a fit (the device may still be smaller).
        if (e.Count == 0)
        {
            var bytes = ModelMemory.EstimateBytes(s);
            Check(bytes <= memoryLimitBytes, "model.ngf, model.ndf, training.batchSize", FormattableString.Invariant(
                $"this run would need about {bytes / 1e9:#,0.#} GB to train (ngf {m.ResolvedNgf}, ndf {m.ResolvedNdf}, batch {t.BatchSize}), more than the limit of {memoryLimitBytes / 1e9:#,0.#} GB"));
        }
        return e;
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex NameRegex();
}
