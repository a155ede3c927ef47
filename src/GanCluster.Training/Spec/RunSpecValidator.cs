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

    /// <summary>Parses and validates a spec file; throws <see cref="InvalidRunSpecException"/> listing every problem.</summary>
    public static RunSpec Load(string path)
    {
        if (!File.Exists(path))
            throw new InvalidRunSpecException(path, [new SpecError("(file)", "does not exist")]);
        return Parse(File.ReadAllText(path), path);
    }

    /// <param name="checkPaths">false where the data lives on other machines (the seed validating for its workers).</param>
    public static RunSpec Parse(string json, string source = "(inline)", bool checkPaths = true)
    {
        var errors = new List<SpecError>();
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

        var spec = JsonSerializer.Deserialize<RunSpec>(json, RunSpec.Json)!;
        var invalid = Validate(spec, checkPaths);
        if (invalid.Count > 0) throw new InvalidRunSpecException(source, invalid);
        return spec;
    }

    static void CheckShape(JsonElement element, Type type, string prefix, List<SpecError> errors)
    {
        var props = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.GetCustomAttribute<System.Text.Json.Serialization.JsonIgnoreAttribute>() is null)
            .ToDictionary(p => JsonNamingPolicy.CamelCase.ConvertName(p.Name), StringComparer.OrdinalIgnoreCase);
        foreach (var field in element.EnumerateObject())
        {
            var path = prefix.Length == 0 ? field.Name : $"{prefix}.{field.Name}";
            if (!props.TryGetValue(field.Name, out var prop))
            {
                errors.Add(new SpecError(path, $"unknown field (known: {string.Join(", ", props.Keys)})"));
                continue;
            }
            var t = Nullable.GetUnderlyingType(prop.PropertyType) ?? prop.PropertyType;
            var v = field.Value;
            var ok = v.ValueKind == JsonValueKind.Null && (Nullable.GetUnderlyingType(prop.PropertyType) is not null || !t.IsValueType)
                || t == typeof(string) && v.ValueKind == JsonValueKind.String
                || t == typeof(int) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out _)
                || t == typeof(long) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out _)
                || t == typeof(double) && v.ValueKind == JsonValueKind.Number
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
        t == typeof(string) ? "a string" : t == typeof(int) || t == typeof(long) ? "an integer" : t == typeof(double) ? "a number" : "an object";

    static string Render(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"\"{v.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        _ => v.GetRawText(),
    };

    /// <summary>Every semantic problem of a parsed spec (empty when valid). Paths must exist on this machine.</summary>
    public static List<SpecError> Validate(RunSpec s, bool checkPaths = true)
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
            Check(Dcgan.ImageSizes.Contains(d.ImageSize), "dataset.imageSize", $"must be 28, 32 or 64 (got {d.ImageSize})");
        }
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
        Check(t.K >= 1, "training.k", $"must be at least 1 (got {t.K})");
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
        Check(t.SampleEvery >= 0, "training.sampleEvery", $"must be 0 (with checkpoints) or more (got {t.SampleEvery})");

        Check(s.Checkpoint.Every >= 1, "checkpoint.every", $"must be at least 1 (got {s.Checkpoint.Every})");
        Check(s.Checkpoint.Keep >= 1, "checkpoint.keep", $"must be at least 1 (got {s.Checkpoint.Keep})");
        return e;
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex NameRegex();
}
