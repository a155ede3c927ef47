using System.CommandLine;
using GanCluster.Training.Output;
using GanCluster.Training.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Cli;

/// <summary><c>gancluster sample --run DIR --count N --out FILE</c>: samples from the latest checkpoint.</summary>
static class SampleCommand
{
    public static Command Build()
    {
        var run = new Option<string>("--run") { Description = "The run's output folder", Required = true };
        var count = new Option<int>("--count") { Description = "Number of samples", DefaultValueFactory = _ => 64 };
        var outFile = new Option<string>("--out") { Description = "By its extension: .png (a grid for image models, a scatter for 2-D ones) or .csv (x,y rows, 2-D models)", Required = true };
        var seed = new Option<long>("--seed") { Description = "Noise seed", DefaultValueFactory = _ => 0 };
        var device = Common.Device();
        var libDir = Common.TorchLibDir();
        var cmd = new Command("sample", "Write samples from a run's latest checkpoint") { run, count, outFile, seed, device, libDir };
        cmd.SetAction(r => Common.Guard(() =>
        {
            var dir = r.GetValue(run)!;
            var n = r.GetValue(count);
            if (n < 1) throw new UsageException($"--count must be at least 1 (got {n})");
            var path = r.GetValue(outFile)!;
            var extension = Path.GetExtension(path).ToLowerInvariant();
            if (extension is not (".png" or ".csv"))
                throw new UsageException($"--out {path}: give a .png (image grid or 2-D scatter) or a .csv (2-D points) file");
            var checkpoint = CheckpointStore.LatestValid(dir, out var skipped);
            foreach (var s in skipped) Console.Error.WriteLine($"warning: skipping checkpoint {s}");
            if (checkpoint is null)
                throw new UsageException($"--run {dir}: no valid checkpoint under {CheckpointStore.Folder(dir)}");

            var (_, dev) = Common.Start(r.GetValue(device)!, r.GetValue(libDir));
            var state = CheckpointStore.ReadState(checkpoint);
            using var replica = new GanReplica(state.Spec, dev, noiseSeed: 0);
            CheckpointStore.Restore(checkpoint, replica, state, optimizers: false);
            using var gen = new Generator((ulong)r.GetValue(seed));   // CPU: SampleNoise copies z to the device
            using var scope = NewDisposeScope();
            var fake = replica.Generate(replica.SampleNoise(n, gen));
            if (replica.IsImage && extension == ".csv")
                throw new UsageException($"--out {path}: this run's model makes images; give a .png file for a grid");
            if (replica.IsImage) ImageWriter.SaveGrid(fake, path);
            else
            {
                var xy = fake.cpu().contiguous().data<float>().ToArray();
                if (extension == ".png") ImageWriter.WriteAtomically(path, RunArtifacts.EncodeScatter(xy, state.Spec.Dataset.Kind));
                else SampleCsv.Write(path, xy);
            }
            Console.WriteLine($"wrote {n} samples from {checkpoint} (iteration {state.Iteration}) to {path}");
            return 0;
        }));
        return cmd;
    }
}
