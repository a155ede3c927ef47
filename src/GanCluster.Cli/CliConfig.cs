using System.Text.Json;

namespace GanCluster.Cli;

/// <summary>
/// The user's CLI settings file, for values that would otherwise be typed on every call. Today one key:
/// <c>{"cluster": "host:port[,host:port]"}</c>. Looked up at <c>$GANCLUSTER_CONFIG</c>, else
/// <c>$XDG_CONFIG_HOME/gancluster/config.json</c>, else <c>~/.config/gancluster/config.json</c>; a missing file is no
/// setting. A command-line flag wins over an environment variable, which wins over the file.
/// </summary>
static class CliConfig
{
    public const string PathVariable = "GANCLUSTER_CONFIG";

    static readonly string[] Keys = ["cluster"];

    public static string FilePath()
    {
        if (Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } explicitPath) return explicitPath;
        var configHome = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
        return Path.Combine(configHome, "gancluster", "config.json");
    }

    /// <summary>The value of <paramref name="key"/>, or null when the file or the key is absent; a malformed file is a usage error naming it.</summary>
    public static string? Get(string key)
    {
        var path = FilePath();
        if (!File.Exists(path)) return null;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new UsageException($"{path}: not valid JSON ({e.Message})");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new UsageException($"{path}: expected a JSON object such as {{\"cluster\": \"host:port\"}}");
            string? value = null;
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                // A misspelled key would silently do nothing: name it.
                if (!Keys.Contains(p.Name)) throw new UsageException($"{path}: unknown setting \"{p.Name}\" (known: {string.Join(", ", Keys)})");
                if (p.Name != key) continue;
                if (p.Value.ValueKind != JsonValueKind.String) throw new UsageException($"{path}: \"{p.Name}\" must be a string");
                value = p.Value.GetString();
            }
            return string.IsNullOrWhiteSpace(value) ? null : value;
        }
    }
}
