using System.CommandLine;
using GanCluster.Cli;

var root = new RootCommand("GanCluster: distributed GAN and DCGAN training on TorchSharp.")
{
    TrainCommand.Build(),
    SampleCommand.Build(),
    BenchCommand.Build(),
    InfoCommand.Build(),
    ExportCommand.Build(),
    SubmitCommand.Build(),
    SubmitCommand.BuildStatus(),
    SubmitCommand.BuildCancel(),
    CertsCommand.Build(),
    ControlBenchCommand.Build(),
};
// Commands handle SIGINT/SIGTERM themselves (a run stops after its current iteration and saves a checkpoint).
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
