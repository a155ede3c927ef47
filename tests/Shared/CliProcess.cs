using System.Diagnostics;

namespace GanCluster.Tests.Shared;

/// <summary>Runs the real CLI (gancluster.dll, copied next to the tests) as a child process.</summary>
public static class CliProcess
{
    /// <summary>The CLI's assembly: named as the command, so that its help and usage say `gancluster`.</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "gancluster.dll");

    public sealed record Result(int ExitCode, string StdOut, string StdErr, TimeSpan Elapsed);

    public static Result Run(string[] args, Dictionary<string, string>? env = null, string? workingDirectory = null, int timeoutSeconds = 300) =>
        RunProgram("dotnet", [Dll, .. args], env, workingDirectory, timeoutSeconds);

    /// <summary>Any program, to its exit (killed with its children, and a TimeoutException, past the limit).</summary>
    public static Result RunProgram(string file, IEnumerable<string> args, Dictionary<string, string>? env = null, string? workingDirectory = null, int timeoutSeconds = 300)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(file)} {string.Join(' ', psi.ArgumentList)} did not finish in {timeoutSeconds} s");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result, clock.Elapsed);
    }
}
