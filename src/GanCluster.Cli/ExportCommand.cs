using System.CommandLine;
using GanCluster.Training.Output;
using GanCluster.Training.Core;
using TorchSharp;

namespace GanCluster.Cli;

/// <summary><c>gancluster export --run DIR --out DIR</c>: G and D of the latest checkpoint as safetensors for PyTorch.</summary>
static class ExportCommand
{
    public static Command Build()
    {
        var run = new Option<string>("--run") { Description = "The run's output folder", Required = true };
        var outDir = new Option<string>("--out") { Description = "Folder for generator.safetensors, discriminator.safetensors and spec.json", Required = true };
        var libDir = Common.TorchLibDir();
        var cmd = new Command("export", "Export G and D of a run's latest checkpoint as safetensors (PyTorch key names)") { run, outDir, libDir };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var dir = r.GetValue(run)!;
            var checkpoint = CheckpointStore.LatestValid(dir, out var skipped);
            foreach (var s in skipped) Console.Error.WriteLine($"warning: skipping checkpoint {s}");
            if (checkpoint is null) throw new UsageException($"--run {dir}: no valid checkpoint under {CheckpointStore.Folder(dir)}");
            Common.Start("cpu", r.GetValue(libDir));
            var state = CheckpointStore.ReadState(checkpoint);
            using var replica = new GanReplica(state.Spec, torch.CPU, noiseSeed: 0);
            CheckpointStore.Restore(checkpoint, replica, state, optimizers: false);
            var target = r.GetValue(outDir)!;
            SafetensorsExport.Save(replica.G, Path.Combine(target, "generator.safetensors"));
            SafetensorsExport.Save(replica.D, Path.Combine(target, "discriminator.safetensors"));
            File.WriteAllText(Path.Combine(target, "spec.json"), state.Spec.ToJson());
            Console.WriteLine($"exported iteration {state.Iteration} of {checkpoint} to {target}: generator.safetensors, discriminator.safetensors, spec.json");
            foreach (var (key, shape) in SafetensorsExport.Describe(Path.Combine(target, "generator.safetensors")))
                Console.WriteLine($"  G {key} [{string.Join(", ", shape)}]");
            return 0;
        }));
        return cmd;
    }
}
