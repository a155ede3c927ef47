using System.Reflection;
using System.Text.Json;

namespace GanCluster.Training.Spec;

/// <summary>
/// Whose a run's output folder is. A folder belongs to the run that wrote its <c>spec.json</c>: the same spec may go on
/// from its checkpoints (with more iterations, other logging), another spec may not resume, prune or trim it.
/// </summary>
public static class RunFolder
{
    public const string SpecFile = "spec.json";

    /// <summary>Settings that may change between runs of the same folder: they do not change what is trained.</summary>
    static readonly HashSet<string> Free = new(StringComparer.Ordinal)
    {
        "output", "checkpoint.every", "checkpoint.keep", "training.iterations", "training.logEvery", "training.sampleEvery",
        "training.maxFailuresPerHour", "training.maxNonFiniteSkips", "training.batchMode", "dataset.placement",
        // How the same model is computed: checkpoints hold fp32 masters whatever the precision.
        "training.precision", "training.memoryFormat", "training.wirePrecision",
        // Scoring and which checkpoints stay: they read the model, never change it.
        "evaluation.quality", "evaluation.samples", "checkpoint.keepBest",
    };

    /// <summary>The fields in which <paramref name="submitted"/> differs from the run that owns the folder (empty: the same run).</summary>
    public static IReadOnlyList<string> Differences(RunSpec owner, RunSpec submitted)
    {
        var diffs = new List<string>();
        Compare(owner, submitted, "", diffs);
        return diffs;
    }

    static void Compare(object a, object b, string prefix, List<string> diffs)
    {
        foreach (var p in a.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (!p.CanWrite || p.GetCustomAttribute<System.Text.Json.Serialization.JsonIgnoreAttribute>() is not null) continue;
            var name = prefix + JsonNamingPolicy.CamelCase.ConvertName(p.Name);
            if (Free.Contains(name)) continue;
            var (x, y) = (p.GetValue(a), p.GetValue(b));
            if (x is not null && y is not null && p.PropertyType.IsClass && p.PropertyType != typeof(string))
                Compare(x, y, name + ".", diffs);
            else if (!Equals(x, y))
                diffs.Add(name);
        }
    }

    /// <summary>
    /// Why <paramref name="submitted"/> may not use <paramref name="folder"/> (null: it may, being empty, new or its own).
    /// </summary>
    public static string? OwnershipProblem(string folder, RunSpec submitted)
    {
        var path = Path.Combine(folder, SpecFile);
        if (!File.Exists(path)) return null;
        RunSpec? owner;
        try
        {
            owner = JsonSerializer.Deserialize<RunSpec>(File.ReadAllText(path), RunSpec.Json);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return $"{folder} holds a {SpecFile} that cannot be read ({e.GetType().Name}); choose another output, or delete the folder to start over";
        }
        if (owner is null) return $"{folder} holds an empty {SpecFile}; choose another output, or delete the folder to start over";
        var diffs = Differences(owner, submitted);
        return diffs.Count == 0 ? null
            : $"{folder} belongs to run \"{owner.Name}\", whose spec differs in {string.Join(", ", diffs)}; choose another output, or delete the folder to start over";
    }

    /// <summary>
    /// Why <paramref name="output"/> cannot be a cluster run's output (null: it can): it must be a relative folder that
    /// stays under the seed's Node:RunsRoot, whoever wrote the spec.
    /// </summary>
    public static string? ClusterOutputProblem(string output)
    {
        if (Path.IsPathRooted(output) || output.StartsWith('~'))
            return $"must be a folder relative to the seed's runs root (Node:RunsRoot), not an absolute path (got \"{output}\")";
        if (output.Split('/', '\\').Any(part => part == ".."))
            return $"must stay under the seed's runs root (Node:RunsRoot): \"..\" is not allowed (got \"{output}\")";
        return null;
    }

    /// <summary><paramref name="output"/> under <paramref name="root"/>, or null when it would leave it (checked again after normalising).</summary>
    public static string? UnderRoot(string root, string output)
    {
        if (ClusterOutputProblem(output) is not null) return null;
        var full = Path.GetFullPath(output, root);
        var prefix = Path.GetFullPath(root);
        if (!prefix.EndsWith(Path.DirectorySeparatorChar)) prefix += Path.DirectorySeparatorChar;
        // Strictly under it: the root itself would mix one run's files with every other run's folders.
        return full.StartsWith(prefix, StringComparison.Ordinal) && full.Length > prefix.Length ? full : null;
    }
}
