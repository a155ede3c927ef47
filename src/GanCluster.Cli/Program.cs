using System.CommandLine;
using GanCluster.Cli;

var root = new RootCommand("GanCluster: distributed GAN and DCGAN training on TorchSharp.")
{
    TrainCommand.Build(),
    SampleCommand.Build(),
    BenchCommand.Build(),
    InfoCommand.Build(),
};
return await root.Parse(args).InvokeAsync();
