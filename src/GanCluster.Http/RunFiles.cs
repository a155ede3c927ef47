using System.Text.Json;
using GanCluster.Protocol;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;

namespace GanCluster.Http;

/// <summary>
/// The run folders under the seed's runs root, as the API's <c>{name}</c> routes see them, and the files in one. Nothing
/// outside a run folder is ever listed or served: no <c>..</c>, no absolute path, no symbolic link (one could lead
/// anywhere), no hidden entry (a save being uploaded, a checkpoint being written).
/// </summary>
public static class RunFiles
{
    /// <summary>At most this many files are listed for one run.</summary>
    public const int MaxFiles = 20_000;

    /// <summary>
    /// The run folder <paramref name="name"/> names: its path under <paramref name="root"/> ("/"-separated), else the
    /// newest run whose spec is named so (<c>RunSummary.Name</c>); null when none.
    /// </summary>
    public static string? Find(string root, string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Contains('\0') || name.Contains('\\')) return null;
        var full = Path.GetFullPath(root);
        var folders = RunListing.Folders(full);
        var byPath = folders.FirstOrDefault(f => Relative(full, f) == name.Trim('/'));
        if (byPath is not null) return byPath;
        return folders.Where(f => SpecName(f) == name)
            .OrderByDescending(f => File.GetLastWriteTimeUtc(Path.Combine(f, RunFolder.SpecFile)))
            .FirstOrDefault();
    }

    /// <summary>The path of a run folder under the root, "/"-separated ("." for the root itself).</summary>
    public static string Relative(string root, string folder) =>
        Path.GetRelativePath(Path.GetFullPath(root), folder).Replace(Path.DirectorySeparatorChar, '/');

    static string? SpecName(string folder)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, RunFolder.SpecFile)));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String
                ? n.GetString() : null;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Every file of the run folder (no hidden entries, no links), by path.</summary>
    public static HttpApi.FileEntry[] List(string folder)
    {
        var files = new List<HttpApi.FileEntry>();
        var pending = new Stack<DirectoryInfo>([new DirectoryInfo(folder)]);
        while (pending.Count > 0 && files.Count < MaxFiles)
        {
            var dir = pending.Pop();
            IEnumerable<FileSystemInfo> entries;
            try { entries = dir.EnumerateFileSystemInfos().ToList(); }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException) { continue; }
            foreach (var entry in entries)
            {
                if (entry.LinkTarget is not null || entry.Name.StartsWith('.')) continue;
                if (entry is DirectoryInfo sub) pending.Push(sub);
                else if (entry is FileInfo file && files.Count < MaxFiles)
                {
                    var path = Path.GetRelativePath(folder, file.FullName).Replace(Path.DirectorySeparatorChar, '/');
                    files.Add(new HttpApi.FileEntry(path, file.Length, KindOf(path)));
                }
            }
        }
        return files.OrderBy(f => f.Path, StringComparer.Ordinal).ToArray();
    }

    /// <summary>sample (under samples/), checkpoint (under checkpoints/), export (exports/, *.safetensors, *.onnx) or other.</summary>
    public static string KindOf(string path)
    {
        var first = path.Split('/')[0];
        return first switch
        {
            "samples" => "sample",
            "checkpoints" => "checkpoint",
            "exports" => "export",
            _ when path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) => "export",
            _ => "other",
        };
    }

    /// <summary>
    /// The full path of the file <paramref name="path"/> ("/"-separated, relative) in <paramref name="folder"/>, or null
    /// when it is not a plain file there: empty, absolute, with "." or ".." segments, a backslash, a hidden segment, or
    /// any symbolic link on the way.
    /// </summary>
    public static string? Resolve(string folder, string? path)
    {
        if (string.IsNullOrEmpty(path) || path.Contains('\\') || path.Contains('\0') || path.StartsWith('/') || Path.IsPathRooted(path)) return null;
        var segments = path.Split('/');
        if (segments.Any(s => s.Length == 0 || s == "." || s == ".." || s.StartsWith('.'))) return null;
        var current = Path.GetFullPath(folder);
        for (var i = 0; i < segments.Length; i++)
        {
            current = Path.Combine(current, segments[i]);
            FileSystemInfo info = i < segments.Length - 1 ? new DirectoryInfo(current) : new FileInfo(current);
            if (!info.Exists || info.LinkTarget is not null) return null;
        }
        // Belt and braces: the result is below the run folder.
        var root = Path.GetFullPath(folder) + Path.DirectorySeparatorChar;
        return current.StartsWith(root, StringComparison.Ordinal) ? current : null;
    }

    /// <summary>Only types a browser shows inertly: a run folder's HTML (a report) downloads instead of running on the API's origin.</summary>
    public static string ContentType(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".png" => "image/png",
        ".csv" => "text/csv; charset=utf-8",
        ".json" => "application/json",
        ".txt" or ".log" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
}
