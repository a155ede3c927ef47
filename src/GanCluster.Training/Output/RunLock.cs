namespace GanCluster.Training.Output;

/// <summary>
/// A run folder's lock (<c>.lock</c>, an advisory exclusive lock the OS drops when the process dies, so a crash leaves no
/// stale lock): one process trains a folder at a time, and <c>gancluster runs</c> can tell a run being trained now.
/// </summary>
public sealed class RunLock : IDisposable
{
    public const string FileName = ".lock";

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
            stream.SetLength(0);
            using (var w = new StreamWriter(stream, leaveOpen: true)) w.Write($"{Environment.ProcessId}@{Environment.MachineName}");
            stream.Flush();
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

    /// <summary>Who holds it, as written by the holder ("pid@host"), or null.</summary>
    public static string? Holder(string output)
    {
        try
        {
            using var fs = new FileStream(Path.Combine(output, FileName), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var r = new StreamReader(fs);
            return r.ReadToEnd() is { Length: > 0 } text ? text : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public void Dispose() => _stream.Dispose();
}
