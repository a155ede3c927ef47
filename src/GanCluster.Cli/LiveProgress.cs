using System.Diagnostics;
using System.Text;
using GanCluster.Engine;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace GanCluster.Cli;

/// <summary>
/// A live progress line (a bar, iteration, img/s, ETA, the latest losses) at the bottom of a terminal, redrawn in place
/// by Spectre.Console while the run's ordinary lines are printed above it. Only when stdout is a terminal that takes
/// ANSI sequences; otherwise (CI, logs, pipes, TERM=dumb) nothing changes: the same plain lines as ever, no escapes.
/// The engine knows nothing of this: it reports <see cref="RunProgress"/> and writes lines to a TextWriter.
/// </summary>
sealed class LiveProgress
{
    readonly ProgressMeter _meter = new(TimeSpan.FromSeconds(30));
    readonly Stopwatch _clock = Stopwatch.StartNew();
    readonly object _gate = new();
    ProgressTask? _task;
    RunProgress? _latest;
    double _barAt;

    LiveProgress() { }

    /// <summary>The console a live line would be drawn on, or null when stdout is not an ANSI terminal.</summary>
    static IAnsiConsole? Terminal()
    {
        if (Console.IsOutputRedirected) return null;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Detect,
            Interactive = InteractionSupport.Detect,
            Out = new AnsiConsoleOutput(Console.Out),
        });
        return console.Profile.Capabilities.Ansi ? console : null;
    }

    /// <summary>
    /// Where a command under <see cref="Run{T}"/> writes: its ordinary lines (above the live line), its error lines
    /// (stderr; held until the live line is gone, since a terminal would mix them into it), and its progress.
    /// </summary>
    public sealed record Sinks(TextWriter Out, TextWriter Error, Action<RunProgress>? Report);

    /// <summary>
    /// Runs <paramref name="body"/> with a live line when stdout is an ANSI terminal, else with Console.Out,
    /// Console.Error and no progress sink (exactly the plain output of old).
    /// </summary>
    public static T Run<T>(Func<Sinks, T> body)
    {
        var console = Terminal();
        if (console is null) return body(new Sinks(Console.Out, Console.Error, null));
        var live = new LiveProgress();
        var errors = new List<string>();
        try
        {
            _active = live;
            return console.Progress()
                .AutoClear(true)   // at the end only the ordinary lines stay, as without a terminal
                .ExcludeVerticalPadding()
                .Columns(new ProgressBarColumn { Width = 20 }, new LineColumn(live))
                .Start(ctx =>
                {
                    live._task = ctx.AddTask("run", autoStart: true, maxValue: 1);
                    using var output = new LineWriter(line => console.Write(new Text(line + "\n")));
                    using var error = new LineWriter(line => { lock (errors) errors.Add(line); });
                    return body(new Sinks(output, error, live.Report));
                });
        }
        finally
        {
            _active = null;
            foreach (var line in errors) Console.Error.WriteLine(line);
        }
    }

    static volatile LiveProgress? _active;

    /// <summary>
    /// The process is about to end without returning from <see cref="Run{T}"/> (Ctrl+C on a followed run): leave the
    /// terminal usable, with its cursor shown and the next output on a line of its own.
    /// </summary>
    public static void Abandon()
    {
        if (_active is null) return;
        Console.Out.Write("\n\u001b[?25h");
        Console.Out.Flush();
    }

    /// <summary>The run reached <paramref name="p"/> (a local run: every iteration, so only the cheap part here): the line shows it at the next refresh.</summary>
    public void Report(RunProgress p)
    {
        lock (_gate)
        {
            var now = _clock.Elapsed.TotalSeconds;
            _meter.Add(p.Iteration, now);
            _latest = p;
            // The bar is drawn 10 times a second: no need to tell Spectre every iteration.
            if (_task is { } t && (now - _barAt >= 0.05 || p.Iteration >= p.Total))
            {
                _barAt = now;
                t.MaxValue = Math.Max(1, p.Total);
                t.Value = Math.Min(p.Iteration, p.Total);
            }
        }
    }

    string Text()
    {
        lock (_gate) return _latest is { } p ? _meter.Describe(p) : "starting";
    }

    /// <summary>The live line's text, cut at the terminal's width rather than wrapped (a wrapped line would scroll).</summary>
    sealed class LineColumn(LiveProgress live) : ProgressColumn
    {
        protected override bool NoWrap => true;

        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text(live.Text()) { Overflow = Overflow.Ellipsis };
    }

    /// <summary>A TextWriter that hands each complete line to <paramref name="line"/> (Spectre prints it above the live line).</summary>
    sealed class LineWriter(Action<string> line) : TextWriter
    {
        readonly StringBuilder _pending = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            lock (_pending)
            {
                if (value == '\n')
                {
                    line(_pending.ToString().TrimEnd('\r'));
                    _pending.Clear();
                }
                else _pending.Append(value);
            }
        }

        public override void Write(string? value)
        {
            foreach (var c in value ?? "") Write(c);
        }

        protected override void Dispose(bool disposing)
        {
            lock (_pending)
                if (_pending.Length > 0)
                {
                    line(_pending.ToString());
                    _pending.Clear();
                }
            base.Dispose(disposing);
        }
    }
}
