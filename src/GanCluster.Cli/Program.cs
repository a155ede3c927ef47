using System.CommandLine;
using GanCluster.Cli;

var root = new RootCommand("GanCluster: distributed GAN and DCGAN training on TorchSharp.")
{
    TrainCommand.Build(),
    SampleCommand.Build(),
    EvalCommand.Build(),
    BenchCommand.Build(),
    InfoCommand.Build(),
    ExportCommand.Build(),
    SubmitCommand.Build(),
    SubmitCommand.BuildStatus(),
    SubmitCommand.BuildCancel(),
    RunsCommand.Build(),
    DownloadCommand.Build(),
    CertsCommand.Build(),
    ControlBenchCommand.Build(),
    ReportCommand.BuildReport(),
    ReportCommand.BuildPlot(),
};
var parsed = root.Parse(args);
// A mistake in the command line is one a user can fix: exit 2 (as a bad spec), naming it, with where to read the usage.
if (CommandLineMistakes.Of(parsed) is { Count: > 0 } mistakes)
{
    foreach (var m in mistakes) Console.Error.WriteLine($"error: {m}");
    Console.Error.WriteLine($"usage: {string.Join(' ', new[] { "gancluster", CommandLineMistakes.Path(parsed), "--help" }.Where(w => w.Length > 0))}");
    return 2;
}
// Commands handle SIGINT/SIGTERM themselves (a run stops after its current iteration and saves a checkpoint).
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
