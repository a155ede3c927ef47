using System.Text.RegularExpressions;
using GanCluster.Training.Data;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests;

/// <summary>
/// Guards for the bugs that only a GPU shows, checked on the CPU: seeded draws only from CPU generators, the NaN guard
/// deciding on the device, bulk snapshots in TorchSharp's own format, and batches sliced from once-uploaded indices.
/// </summary>
public partial class DevicePathTests
{
    public DevicePathTests() => TorchSetup.Ensure();

    static string Root()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "GanCluster.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("GanCluster.sln above " + AppContext.BaseDirectory);
    }

    /// <summary>Every C# call in src/ that names a generator, with its file and line.</summary>
    static IEnumerable<(string File, int Line, string Call)> Calls(Regex start)
    {
        foreach (var file in Directory.EnumerateFiles(Path.Combine(Root(), "src"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}")) continue;
            var text = File.ReadAllText(file);
            foreach (Match m in start.Matches(text))
            {
                // The call's argument list: from its "(" to the matching ")".
                var open = text.LastIndexOf('(', m.Index + m.Length - 1);
                int depth = 0, end = open;
                for (; end < text.Length; end++)
                {
                    if (text[end] == '(') depth++;
                    else if (text[end] == ')' && --depth == 0) break;
                }
                var line = text[..m.Index].Count(c => c == '\n') + 1;
                yield return (Path.GetRelativePath(Root(), file), line, text[m.Index..Math.Min(end + 1, text.Length)]);
            }
        }
    }

    [Fact]
    public void No_generator_is_made_for_a_device_and_none_goes_to_a_tensor_factory_off_the_cpu()
    {
        // TorchSharp 0.107: new Generator(seed, device) is a CPU generator whatever the device, and a factory on CUDA
        // refuses it ("Expected a 'cuda' device type for generator but found 'cpu'"). Only a GPU run would show it.
        var withDevice = Calls(GeneratorCtor()).Where(c => TopLevelArguments(c.Call) > 1).ToList();
        Assert.True(withDevice.Count == 0, "new Generator(...) given a device (it stays a CPU generator):\n" + string.Join("\n", withDevice));

        var factories = Calls(FactoryWithGenerator()).Where(c => c.Call.Contains("generator:", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(factories);   // the scan does see the draws there are
        var offCpu = factories.Where(c => !Regex.IsMatch(c.Call, @",\s*(torch\.)?CPU\s*,")).ToList();
        Assert.True(offCpu.Count == 0, "a tensor factory given a generator on a device other than CPU (draw on the CPU and copy):\n" + string.Join("\n", offCpu));
    }

    static int TopLevelArguments(string call)
    {
        var inner = call[(call.IndexOf('(') + 1)..^1];
        if (inner.Trim().Length == 0) return 0;
        int depth = 0, count = 1;
        foreach (var ch in inner)
        {
            if (ch is '(' or '[' or '{') depth++;
            else if (ch is ')' or ']' or '}') depth--;
            else if (ch == ',' && depth == 0) count++;
        }
        return count;
    }

    [Fact]
    public void Noise_is_the_same_numbers_as_the_cpu_generator_draws_and_checkpoints_refuse_a_noise_state_of_the_wrong_length()
    {
        var spec = TinySpecs.Ring8("unused", 1);
        using var replica = new GanReplica(spec, CPU, noiseSeed: 21);
        using var z = replica.SampleNoise(5);
        using var gen = new Generator(21);
        using var expected = randn([5, 2], ScalarType.Float32, CPU, generator: gen);
        Assert.True(z.eq(expected).all().item<bool>());

        var e = Assert.Throws<InvalidDataException>(() => CheckpointStore.SetNoiseState(replica.NoiseGenerator, Convert.ToBase64String(new byte[100]), "ckpt"));
        Assert.Contains("noiseState holds 100 bytes", e.Message);
        // The right length restores the stream exactly.
        var saved = CheckpointStore.NoiseStateOf(replica);
        using var a = replica.SampleNoise(3);
        CheckpointStore.SetNoiseState(replica.NoiseGenerator, saved, "ckpt");
        using var b = replica.SampleNoise(3);
        Assert.True(a.eq(b).all().item<bool>());
    }

    [Fact]
    public void A_skipped_update_leaves_parameters_moments_and_step_count_exactly_as_they_were()
    {
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, 1);
        using var guarded = new GanReplica(spec, CPU, 0);
        using var plain = new GanReplica(spec, CPU, 0);
        using var guard = new NonFiniteGuard(maxConsecutive: 3, CPU, onDevice: true);
        using var gen = new Generator(8);
        using var real = GanReplica.DrawNormal([64, 2], gen, CPU);
        using var nan = full([], double.NaN, ScalarType.Float32, CPU);
        for (var i = 0; i < 4; i++)
        {
            guarded.ComputeDiscriminatorGradients(real, last: false);
            plain.ComputeDiscriminatorGradients(real, last: false);
            guarded.ApplyDiscriminator(guard.Observe(guarded.FlatD.Grads.isfinite().all(), i));
            plain.ApplyDiscriminator();
            // A poisoned update in between: not applied, and nothing of it stays.
            guarded.ComputeDiscriminatorGradients(real, last: false);
            guarded.ApplyDiscriminator(guard.Observe(nan.isfinite(), i));
            plain.ComputeDiscriminatorGradients(real, last: false);   // keeps both noise streams in step
        }
        Assert.Equal(plain.FlatD.StepCount, guarded.FlatD.StepCount);
        // Masked arithmetic rounds like the host path up to a few ulps: compare values, not bits.
        var diff = (plain.FlatD.Values - guarded.FlatD.Values).abs().max().item<float>();
        Assert.True(diff < 1e-6, $"max difference {diff}");
        var counts = guard.Read();
        Assert.Equal((4L, 1L, false), (counts.Skipped, counts.Consecutive, counts.Stopped));

        // Three in a row stop the guard: it says where, and from then on nothing is applied, finite or not.
        guarded.ComputeDiscriminatorGradients(real, false);
        guarded.ApplyDiscriminator(guard.Observe(nan.isfinite(), 7));
        guarded.ApplyDiscriminator(guard.Observe(nan.isfinite(), 8));
        var frozen = guarded.FlatD.Values.clone();
        guarded.ComputeDiscriminatorGradients(real, false);
        guarded.ApplyDiscriminator(guard.Observe(guarded.FlatD.Grads.isfinite().all(), 9));
        counts = guard.Read();
        Assert.Equal((6L, true, 8L), (counts.Skipped, counts.Stopped, counts.StopIteration));
        Assert.True(guarded.FlatD.Values.eq(frozen).all().item<bool>());
    }

    [Theory]
    [InlineData("adam")]
    [InlineData("sgd")]
    public void Snapshots_from_the_flat_buffers_are_byte_for_byte_what_TorchSharp_writes(string optimizer)
    {
        var spec = new RunSpec
        {
            Dataset = new DatasetSpec { Kind = "folder", ImageSize = 28, Channels = 1 },
            Model = new ModelSpec { Kind = "dcgan", Nz = 4, Ngf = 4, Ndf = 4 },
            Training = new TrainingSpec { BatchSize = 4, OptimizerD = optimizer, OptimizerG = optimizer, Seed = 2 },
        };
        using var replica = new GanReplica(spec, CPU, 0);
        using var gen = new Generator(1);
        using var real = GanReplica.DrawNormal([4, 1, 28, 28], gen, CPU);
        for (var i = 0; i < 2; i++)
        {
            replica.ComputeDiscriminatorGradients(real, last: true);
            replica.ApplyDiscriminator();
            replica.ComputeGeneratorGradients(4);
            replica.ApplyGenerator();
        }
        static byte[] Bytes(Action<BinaryWriter> write)
        {
            using var ms = new MemoryStream();
            using (var w = new BinaryWriter(ms)) write(w);
            return ms.ToArray();
        }
        Assert.Equal(Bytes(w => replica.G.save(w)), Bytes(replica.SaveG));
        Assert.Equal(Bytes(w => replica.D.save(w)), Bytes(replica.SaveD));
        replica.FlatD.SyncState();
        Assert.Equal(Bytes(replica.OptD.save_state_dict), Bytes(replica.SaveOptD));
    }

    [Fact]
    public void SGD_momentum_state_loads_into_a_replica_that_has_already_stepped()
    {
        // What every survivor of a re-form does: rank 0's optimizer state into a replica with momentum buffers of its own.
        var spec = TinySpecs.Ring8("unused", 1) with
        {
            Training = TinySpecs.Ring8("unused", 1).Training with { OptimizerD = "sgd", OptimizerG = "sgd", MomentumD = 0.9, MomentumG = 0.9 },
        };
        using var source = new GanReplica(spec, CPU, 0);
        using var survivor = new GanReplica(spec, CPU, 1);
        using var gen = new Generator(3);
        using var real = GanReplica.DrawNormal([64, 2], gen, CPU);
        foreach (var r in new[] { source, survivor })
            for (var i = 0; i < 3; i++)
            {
                r.ComputeDiscriminatorGradients(real, last: true);
                r.ApplyDiscriminator();
                r.ComputeGeneratorGradients(64);
                r.ApplyGenerator();
            }
        survivor.LoadState(source.SaveState());   // threw "Tensor invalid -- empty handle" before
        Assert.Equal(source.Checksum(withBuffers: true), survivor.Checksum(withBuffers: true));
        // One more identical step: the momentum came across too.
        using var z = source.SampleNoise(64);
        foreach (var r in new[] { source, survivor })
        {
            r.ComputeDiscriminatorGradients(real, last: false, noise: z);
            r.ApplyDiscriminator();
        }
        Assert.Equal(source.Checksum(), survivor.Checksum());
        survivor.LoadState(source.SaveState());   // and again, after stepping with the loaded state
        Assert.Equal(source.Checksum(), survivor.Checksum());
    }

    [Fact]
    public void Batches_sliced_from_once_uploaded_epoch_indices_are_the_batches_of_the_cursor()
    {
        using var data = new SampleSet(arange(0, 50, ScalarType.Float32).reshape(25, 2), "test");
        using var sliced = DeviceData.Place(new SampleSet(data.Data.clone(), "test"), CPU, "device");
        using var gathered = DeviceData.Place(new SampleSet(data.Data.clone(), "test"), CPU, "auto");
        Assert.Equal((DataPlacement.Device, DataPlacement.Cpu), (sliced.Placement, gathered.Placement));
        var sampler = new ShardSampler(25, rank: 1, worldSize: 2, seed: 4);
        var a = new BatchCursor(sampler);
        var b = new BatchCursor(sampler);
        var c = new BatchCursor(sampler);
        for (var i = 0; i < 7; i++)   // batches of 5 over shards of 13: some straddle two epochs
        {
            using var x = sliced.Batch(a, 5);
            using var y = gathered.Batch(b, 5);
            using var expected = data.Batch(c.Next(5), CPU);
            Assert.True(x.eq(expected).all().item<bool>() && y.eq(expected).all().item<bool>(), $"batch {i}");
        }
        Assert.Equal(3, sliced.IndexUploads);   // epochs 0, 1 and 2: each epoch's indices made once
        // A re-formed shard (new rank, same epoch numbers) gets its own indices, not the old shard's.
        var other = new BatchCursor(new ShardSampler(25, rank: 0, worldSize: 1, seed: 4));
        var check = new BatchCursor(new ShardSampler(25, rank: 0, worldSize: 1, seed: 4));
        using var z = sliced.Batch(other, 5);
        using var want = data.Batch(check.Next(5), CPU);
        Assert.True(z.eq(want).all().item<bool>());
    }

    [GeneratedRegex(@"new\s+(torch\.)?Generator\s*\(")]
    private static partial Regex GeneratorCtor();

    [GeneratedRegex(@"\b(randn|rand|randint|randperm|normal|bernoulli|multinomial|rand_like|randn_like|randint_like)\s*\(")]
    private static partial Regex FactoryWithGenerator();
}
