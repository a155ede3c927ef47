using System.Diagnostics;
using System.Text;

namespace GanCluster.Tests.Shared;

/// <summary>
/// The real CLI under a pseudo-terminal, as a user at a terminal runs it: <c>script -qec "…" /dev/null</c> (util-linux)
/// gives it a pty as stdin, stdout and stderr and copies everything it draws (escape sequences included) to our pipe.
/// Bytes written to <see cref="Send"/> reach the pty as typed keys (0x03 is Ctrl+C: the pty sends SIGINT).
/// </summary>
public sealed class Pty : IDisposable
{
    readonly Process _process;
    readonly StringBuilder _output = new();
    readonly Task _reader;
    readonly AutoResetEvent _changed = new(false);   // set on every read, and at the end of the output

    /// <param name="args">The CLI's arguments.</param>
    /// <param name="columns">The terminal's width (a pty made by script has none until stty sets one).</param>
    public Pty(string[] args, int columns = 200, Dictionary<string, string>? env = null)
    {
        if (!File.Exists("/usr/bin/script"))
            throw new InvalidOperationException("these tests need util-linux's script(1) (apt-get install util-linux)");
        var cli = string.Join(' ', new[] { "dotnet", CliProcess.Dll }.Concat(args).Select(Quote));
        var psi = new ProcessStartInfo("script")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Environment.CurrentDirectory,
        };
        // -q: no banner, -e: script's exit code is the command's, -c: the command; /dev/null: no typescript file.
        foreach (var a in new[] { "-qec", $"stty cols {columns} rows 50; exec {cli}", "/dev/null" }) psi.ArgumentList.Add(a);
        psi.Environment["TERM"] = "xterm-256color";
        foreach (var (k, v) in env ?? []) psi.Environment[k] = v;
        _process = Process.Start(psi)!;
        _reader = Task.Run(async () =>
        {
            var buffer = new char[4096];
            int n;
            while ((n = await _process.StandardOutput.ReadAsync(buffer)) > 0)
            {
                lock (_output) _output.Append(buffer, 0, n);
                _changed.Set();
            }
            _changed.Set();
        });
        _ = _process.StandardError.ReadToEndAsync();
    }

    /// <summary>Everything drawn so far, escape sequences and carriage returns included.</summary>
    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    public void Send(string keys)
    {
        _process.StandardInput.Write(keys);
        _process.StandardInput.Flush();
    }

    /// <summary>Waits until the output satisfies <paramref name="condition"/>; false when the process ended or time ran out first.</summary>
    public bool WaitFor(Func<string, bool> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!condition(Output))
        {
            if (_reader.IsCompleted) return condition(Output);
            var left = timeout - clock.Elapsed;
            if (left <= TimeSpan.Zero) return false;
            _changed.WaitOne(left);
        }
        return true;
    }

    /// <summary>Waits for the command to end; its exit code (script -e passes it on).</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
            throw new TimeoutException($"the CLI under a pty did not end in {timeout}; output so far:\n{Output}");
        _reader.Wait(TimeSpan.FromSeconds(10));
        return _process.ExitCode;
    }

    /// <summary>The text as a terminal would have left it, roughly: escape sequences removed, each carriage return a line break.</summary>
    public static string Plain(string drawn) =>
        System.Text.RegularExpressions.Regex.Replace(drawn, "\u001b\\[[0-9;?]*[A-Za-z]|\u001b[=>]", "").Replace("\r\n", "\n").Replace('\r', '\n');

    static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
        _changed.Dispose();
    }
}
