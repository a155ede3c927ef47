namespace GanCluster.Training.Output;

/// <summary>
/// A run folder's lock (<c>.lock</c>, an advisory exclusive lock the OS drops when the process dies, so a crash leaves no
/// stale lock): one process trains a folder at a time, and <c>gancluster runs</c> can tell a run being trained now.
/// </summary>
public sealed class RunLock : IDisposable
{
    public const string FileName = ".lock";
    const string HolderFileName = ".lock.holder";

    readonly FileStream _stream;

    RunLock(FileStream stream) => _stream = stream;

    /// <summary>Takes the lock of <paramref name="output"/>, or returns null when another process holds it.</summary>
    public static RunLock? TryAcquire(string output)
    {
        Directory.CreateDirectory(output);
        try
        {
            // FileShare.None: .NET takes flock(LOCK_EX) on Unix, released by the kernel with the process.
            var stream = new FileStream(Path.Combine(output, FileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            // Who holds it goes beside the lock: .NET's own lock keeps every other open of the lock file out, readers too.
            File.WriteAllText(Path.Combine(output, HolderFileName), $"{Environment.ProcessId}@{Environment.MachineName}");
            return new RunLock(stream);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Whether a process holds the lock now (a folder without one is not being trained).</summary>
    public static bool IsHeld(string output)
    {
        var path = Path.Combine(output, FileName);
        if (!File.Exists(path)) return false;
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Who holds it, as its holder wrote it ("pid@host"), or null.</summary>
    public static string? Holder(string output)
    {
        try
        {
            return File.ReadAllText(Path.Combine(output, HolderFileName)).Trim() is { Length: > 0 } text ? text : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public void Dispose() => _stream.Dispose();
}
