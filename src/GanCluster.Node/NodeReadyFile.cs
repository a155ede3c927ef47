namespace GanCluster.Node;

/// <summary>Node:ReadyFile: how far the node got ("listening …", then "joined …"), replaced atomically so a reader never sees half a line.</summary>
public static class NodeReadyFile
{
    public static void Write(string? path, string state)
    {
        if (string.IsNullOrWhiteSpace(path)) return;
        try
        {
            var full = Path.GetFullPath(path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            var tmp = $"{full}.{Environment.ProcessId}.tmp";
            File.WriteAllText(tmp, state + "\n");
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The node runs on; only whoever waits on the file is left waiting, and the log says why.
            Console.Error.WriteLine($"gancluster node: warning: Node:ReadyFile {path}: {e.Message}");
        }
    }
}
