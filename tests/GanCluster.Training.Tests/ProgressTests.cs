using System.Text.RegularExpressions;
using GanCluster.Engine;
using GanCluster.Training.Output;

namespace GanCluster.Training.Tests;

/// <summary>The live progress line: its arithmetic (pure), and the CLI as a user runs it, on a terminal and not.</summary>
public partial class ProgressTests
{
    [Fact]
    public void The_eta_is_the_iterations_left_over_the_speed_rounded_up_to_a_second()
    {
        Assert.Equal(TimeSpan.FromSeconds(100), ProgressMeter.Eta(100, 1100, 10));
        Assert.Equal(TimeSpan.FromSeconds(34), ProgressMeter.Eta(0, 100, 3));        // 33.3 s: a whole second more
        Assert.Equal(TimeSpan.FromHours(2), ProgressMeter.Eta(0, 7200, 1));
        Assert.Equal(TimeSpan.Zero, ProgressMeter.Eta(500, 500, null));             // done: nothing left, speed or not
        Assert.Equal(TimeSpan.Zero, ProgressMeter.Eta(600, 500, 5));
        Assert.Null(ProgressMeter.Eta(1, 500, null));                               // no speed yet
        Assert.Null(ProgressMeter.Eta(1, 500, 0));
        Assert.Null(ProgressMeter.Eta(1, 500, -2));
        Assert.Null(ProgressMeter.Eta(1, 500, double.NaN));
        Assert.Null(ProgressMeter.Eta(1, long.MaxValue, 1e-300));                   // beyond what a TimeSpan holds

        Assert.Equal("--:--", ProgressMeter.FormatEta(null));
        Assert.Equal("0:00", ProgressMeter.FormatEta(TimeSpan.Zero));
        Assert.Equal("1:05", ProgressMeter.FormatEta(TimeSpan.FromSeconds(65)));
        Assert.Equal("59:59", ProgressMeter.FormatEta(TimeSpan.FromSeconds(3599)));
        Assert.Equal("1:00:05", ProgressMeter.FormatEta(TimeSpan.FromSeconds(3605)));
        Assert.Equal("26:00:00", ProgressMeter.FormatEta(TimeSpan.FromHours(26)));
    }

    [Fact]
    public void The_speed_is_measured_over_the_recent_window_and_forgets_a_run_that_went_back()
    {
        var meter = new ProgressMeter(TimeSpan.FromSeconds(10));
        Assert.Null(meter.IterationsPerSecond);
        meter.Add(0, 0);
        Assert.Null(meter.IterationsPerSecond);                     // one point: no speed
        for (var s = 1; s <= 20; s++) meter.Add(s * 2, s);          // 2 it/s for 20 s
        Assert.Equal(2, meter.IterationsPerSecond!.Value, 6);
        for (var s = 21; s <= 40; s++) meter.Add(40 + (s - 20) * 10, s);   // then 10 it/s for 20 s
        Assert.Equal(10, meter.IterationsPerSecond!.Value, 6);     // the slow start is out of the 10 s window

        meter.Add(100, 41);                                         // back to a checkpoint: trained again
        Assert.Null(meter.IterationsPerSecond);
        meter.Add(105, 42);
        Assert.Equal(5, meter.IterationsPerSecond!.Value, 6);
    }

    [Fact]
    public void The_line_shows_iteration_share_speed_eta_and_the_latest_losses()
    {
        var meter = new ProgressMeter(TimeSpan.FromSeconds(30));
        var row = new MetricsRow(200, 1.25, 0.75, 0.5, 0.375, 640, 20);
        // No speed of its own yet: the logged window's img/s over the batch stands in (640 / 64 = 10 it/s).
        Assert.Equal("iteration 200/1000 (20%)  640 img/s  ETA 1:20  Loss_D 1.2500  Loss_G 0.7500  D(x) 0.500  D(G(z)) 0.375",
            meter.Describe(new RunProgress(200, 1000, 64, row)));
        meter.Add(200, 0);
        meter.Add(300, 5);                                          // 20 it/s of its own
        Assert.Equal("iteration 300/1000 (30%)  1,280 img/s  ETA 0:35  Loss_D 1.2500  Loss_G 0.7500  D(x) 0.500  D(G(z)) 0.375",
            meter.Describe(new RunProgress(300, 1000, 64, row)));
        Assert.Equal("iteration 3/1000 (0%)  - img/s  ETA --:--", new ProgressMeter(TimeSpan.FromSeconds(30)).Describe(new RunProgress(3, 1000, 64, null)));
    }

    static string TinySpecFile(TempFolder dir, int iterations)
    {
        var path = Path.Combine(dir.Path, "ring8.json");
        var spec = TinySpecs.Ring8(Path.Combine(dir.Path, "out"), iterations);
        spec = spec with { Training = spec.Training with { BatchSize = 32, LogEvery = 100 } };
        File.WriteAllText(path, spec.ToJson());
        return path;
    }

    [Fact]
    public void On_a_terminal_train_draws_a_live_line_with_the_iteration_and_an_eta_below_the_usual_lines()
    {
        using var dir = new TempFolder();
        using var pty = new Pty(["train", "--local", TinySpecFile(dir, 400), "--device", "cpu"]);
        Assert.Equal(0, pty.WaitForExit(TimeSpan.FromMinutes(4)));
        var drawn = pty.Output;
        var text = Pty.Plain(drawn);

        var lines = LiveLineRegex().Matches(text);
        Assert.True(lines.Count > 0, $"no progress line in:\n{text}");
        Assert.Contains(lines, m => int.Parse(m.Groups[1].Value) < 400 && m.Groups[2].Value != "--:--");   // mid-run, with an ETA
        Assert.Contains(lines, m => m.Value.Contains("Loss_D 1.") || m.Value.Contains("Loss_D 0."));       // losses after the first log line
        Assert.Contains("\u001b[", drawn);                          // drawn in place
        // The usual lines are all there, above it.
        Assert.Contains("[100/400] Loss_D:", text);
        Assert.Contains("[400/400] Loss_D:", text);
        Assert.Contains("final parameter checksum", text);
        Assert.EndsWith("\u001b[?25h", drawn.TrimEnd());           // the line is gone and the cursor is back at the end
    }

    [Fact]
    public void Ctrl_c_on_a_terminal_stops_after_the_current_iteration_and_saves_a_checkpoint()
    {
        using var dir = new TempFolder();
        using var pty = new Pty(["train", "--local", TinySpecFile(dir, 1_000_000), "--device", "cpu"]);
        Assert.True(pty.WaitFor(o => LiveLineRegex().IsMatch(Pty.Plain(o)), TimeSpan.FromMinutes(3)), $"no progress line in:\n{pty.Output}");
        pty.Send("\u0003");                                         // Ctrl+C, as typed: the pty sends SIGINT
        Assert.Equal(130, pty.WaitForExit(TimeSpan.FromMinutes(2)));

        var text = Pty.Plain(pty.Output);
        Assert.Contains("SIGINT received, stopping after the current iteration", text);
        var stopped = long.Parse(CancelledRegex().Match(text).Groups[1].Value);
        var checkpoint = CheckpointStore.PathOf(Path.Combine(dir.Path, "out"), stopped);
        Assert.Null(CheckpointStore.Verify(checkpoint));
        Assert.EndsWith("\u001b[?25h", pty.Output.TrimEnd());
    }

    [Fact]
    public void With_stdout_redirected_train_prints_plain_lines_and_no_escapes_even_on_a_capable_terminal_type()
    {
        using var dir = new TempFolder();
        var run = CliProcess.Run(["train", "--local", TinySpecFile(dir, 200), "--device", "cpu"], env: new() { ["TERM"] = "xterm-256color" });
        Assert.True(run.ExitCode == 0, run.StdErr + run.StdOut);
        Assert.DoesNotContain('\u001b', run.StdOut + run.StdErr);
        Assert.DoesNotContain('\r', run.StdOut);
        Assert.DoesNotMatch(LiveLineRegex(), run.StdOut);
        Assert.DoesNotContain("ETA", run.StdOut);
        // Exactly the log lines: banners, indented details and one [i/N] line per logging interval.
        var lines = run.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(lines, l => Assert.Matches(@"^(==> |    |\[\d+/200\] Loss_D: )", l));
        Assert.Equal(2, lines.Count(l => l.StartsWith('[')));
    }

    [GeneratedRegex(@"iteration (\d+)/\d+ \(\d+%\)  [\d,]+ img/s  ETA ([\d:]+|--:--)[^\n]*")]
    private static partial Regex LiveLineRegex();

    [GeneratedRegex(@"cancelled at iteration (\d+): saving a checkpoint")]
    private static partial Regex CancelledRegex();
}
