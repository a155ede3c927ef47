namespace GanCluster.Tests.Shared;

/// <summary>A fresh folder under the system temp dir, deleted with everything in it at the end of the test.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "gancluster-test-" + Guid.NewGuid().ToString("N"));

    /// <summary>The full path of <paramref name="relative"/> inside this folder, creating its parent folders.</summary>
    public string File(string relative)
    {
        var full = System.IO.Path.Combine(Path, relative);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        return full;
    }

    public void Dispose()
    {
        // Best effort: a leftover temp folder must not fail a test.
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
