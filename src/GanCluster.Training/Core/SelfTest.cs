using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>
/// <c>gancluster info --self-test</c>: a tiny DCGAN on the chosen device takes real training steps and makes a
/// checkpoint round trip, touching every device path a run uses (seeded noise, data on the device, the guarded flat
/// optimizer, bulk snapshots, restore, samples). Seconds on a CPU; CI runs it there, the GPU check on CUDA.
/// </summary>
public static class SelfTest
{
    /// <summary>Prints one PASS/FAIL line per check; true when all passed.</summary>
    public static bool Run(Device device, TextWriter log)
    {
        var failed = 0;
        void Check(string name, Func<string> body)
        {
            try
            {
                log.WriteLine($"PASS {name}: {body()}");
            }
            catch (Exception e)
            {
                failed++;
                log.WriteLine($"FAIL {name}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            }
        }

        var spec = new RunSpec
        {
            Name = "self-test",
            Dataset = new DatasetSpec { Kind = "folder", ImageSize = 28, Channels = 1 },
            Model = new ModelSpec { Kind = "dcgan", Nz = 16, Ngf = 8, Ndf = 8 },
            Training = new TrainingSpec { K = 1, BatchSize = 8, Seed = 5 },
        };
        using var dir = new TempDir();
        GanReplica? replica = null;
        // Bit-reproducible kernels, so that a restored replica's next step can be compared bit for bit: multi-threaded
        // oneDNN convolution gradients vary from run to run, and Adam's first steps turn that into visible differences.
        var deterministic = Native.TorchRuntime.SetDeterministic(true);
        log.WriteLine($"deterministic kernels: {(deterministic ? "on for the self-test" : "not available in this libtorch")}");
        try
        {
            Check("noise", () =>
            {
                replica = new GanReplica(spec, device, noiseSeed: 11);
                using var z = replica.SampleNoise(4);
                using var gen = new Generator(11);
                using var again = GanReplica.DrawNormal([4, 16, 1, 1], gen, CPU);
                if (z.device.type != device.type) throw new InvalidOperationException($"noise came back on {z.device}");
                if (!z.cpu().eq(again).all().item<bool>()) throw new InvalidOperationException("noise differs from the CPU generator's numbers");
                return $"[4, 16, 1, 1] on {z.device}, the same numbers as on the CPU for the same seed";
            });
            if (replica is null) return false;

            string? before = null;
            Check("train-step", () =>
            {
                using var gen = new Generator(3);
                using Scalar two = 2;   // held (see Scalars)
                using var real = GanReplica.DrawUniform([8, 1, 28, 28], gen, device).mul_(two).sub_(Scalars.One);
                using var guard = new NonFiniteGuard(3, device, onDevice: true);
                before = replica.Checksum();
                for (var i = 0; i < 2; i++)
                {
                    replica.ComputeDiscriminatorGradients(real, last: true);
                    replica.ApplyDiscriminator(guard.Observe(replica.FlatD.Grads.isfinite().all(), i));
                    replica.ComputeGeneratorGradients(8);
                    replica.ApplyGenerator(guard.Observe(replica.FlatG.Grads.isfinite().all(), i));
                }
                var counts = guard.Read();
                var stats = replica.TakeStats();
                if (counts.Skipped != 0 || !double.IsFinite(stats.LossD) || !double.IsFinite(stats.LossG))
                    throw new InvalidOperationException($"losses D {stats.LossD}, G {stats.LossG}, {counts.Skipped} update(s) skipped");
                if (replica.Checksum() == before) throw new InvalidOperationException("the parameters did not change");
                if (replica.FlatD.StepCount != 2 || replica.FlatG.StepCount != 2)
                    throw new InvalidOperationException($"Adam step counts D {replica.FlatD.StepCount}, G {replica.FlatG.StepCount}, expected 2");
                return FormattableString.Invariant($"2 iterations, loss D {stats.LossD:F3}, G {stats.LossG:F3}");
            });

            Check("bf16-channels-last", () =>
            {
                // training.precision bf16 + channels_last: the compute copies' dtype and strides on this device, and
                // gradients that point where fp32's do for the same batch and noise.
                var mixedSpec = spec with { Training = spec.Training with { Precision = "bf16", MemoryFormat = "channels_last" } };
                using var fp32 = new GanReplica(spec, device, noiseSeed: 12);
                using var mixed = new GanReplica(mixedSpec, device, noiseSeed: 12);
                using var gen = new Generator(6);
                using var real = GanReplica.DrawUniform([8, 1, 28, 28], gen, device);
                using var z = GanReplica.DrawNormal([8, 16, 1, 1], gen, device);
                fp32.ComputeDiscriminatorGradients(real, last: true, noise: z);
                mixed.ComputeDiscriminatorGradients(real, last: true, noise: z);
                var weights = mixed.ComputeD!.Parameters.ToList();
                if (weights.Any(w => w.dtype != ScalarType.BFloat16 || w.device.type != device.type || w.dim() == 4 && !ComputeNetwork.IsChannelsLast(w)))
                    throw new InvalidOperationException("D's compute weights are not bf16 with NHWC strides on the device");
                using var a = mixed.FlatD.Grads.cpu();
                using var b = fp32.FlatD.Grads.cpu();
                var cos = (a.dot(b) / (a.norm() * b.norm())).item<float>();
                if (!(cos > 0.99)) throw new InvalidOperationException(FormattableString.Invariant($"bf16 D gradients at cos {cos:F4} from fp32's"));
                mixed.ApplyDiscriminator();
                mixed.ComputeGeneratorGradients(8, noise: z);
                mixed.ApplyGenerator();
                if (!mixed.FlatG.Values.isfinite().all().item<bool>()) throw new InvalidOperationException("G is not finite after a bf16 step");
                return FormattableString.Invariant($"{weights.Count} bf16 NHWC weights in D, gradients at cos {cos:F4} from fp32's, a step applied");
            });

            Check("nan-guard", () =>
            {
                using var gen = new Generator(4);
                using var real = GanReplica.DrawUniform([8, 1, 28, 28], gen, device);
                using var guard = new NonFiniteGuard(3, device, onDevice: true);
                var sum = replica.Checksum();
                using Scalar nanValue = double.NaN;
                using (var nan = full([], nanValue, ScalarType.Float32, device))
                {
                    replica.ComputeDiscriminatorGradients(real, last: false);
                    replica.ApplyDiscriminator(guard.Observe(nan.isfinite(), 0));
                }
                replica.TakeStats();
                if (replica.Checksum() != sum) throw new InvalidOperationException("a skipped update changed the parameters");
                var counts = guard.Read();
                return counts.Skipped == 1 ? "non-finite gradients skip their update on the device" : throw new InvalidOperationException($"{counts.Skipped} skips counted");
            });

            Check("checkpoint", () =>
            {
                var state = new CheckpointState { Iteration = 2, Spec = spec, NoiseState = CheckpointStore.NoiseStateOf(replica) };
                var path = CheckpointStore.Save(dir.Path, replica, state, keep: 1);
                var problem = CheckpointStore.Verify(path);
                if (problem is not null) throw new InvalidDataException(problem);
                using var restored = new GanReplica(spec, device, noiseSeed: 99);
                CheckpointStore.Restore(path, restored, CheckpointStore.ReadState(path));
                if (restored.Checksum(withBuffers: true) != replica.Checksum(withBuffers: true)) throw new InvalidDataException("restored weights differ");
                if (restored.FlatD.StepCount != replica.FlatD.StepCount) throw new InvalidDataException("Adam's step count was not restored");
                // One more identical step on both: equal only if the optimizer moments and the noise stream came back too.
                using var gen = new Generator(5);
                using var real = GanReplica.DrawUniform([8, 1, 28, 28], gen, device);
                foreach (var r in new[] { replica, restored })
                {
                    r.ComputeDiscriminatorGradients(real, last: true);
                    r.ApplyDiscriminator();
                    r.ComputeGeneratorGradients(8);
                    r.ApplyGenerator();
                    r.TakeStats();
                }
                using var a = cat([replica.FlatG.Values, replica.FlatD.Values], 0).cpu();
                using var b = cat([restored.FlatG.Values, restored.FlatD.Values], 0).cpu();
                var relative = (a - b).norm().item<float>() / a.norm().item<float>();
                if (restored.Checksum(withBuffers: true) != replica.Checksum(withBuffers: true))
                    throw new InvalidDataException(FormattableString.Invariant(
                        $"after one more step the restored replica differs (relative difference {relative:E1}): optimizer state or noise not restored{(deterministic ? "" : ", or non-deterministic kernels")}"));
                return $"written, verified, restored; one more step identical bit for bit ({replica.Checksum(withBuffers: true)[..12]})";
            });

            Check("samples", () =>
            {
                using var fixedNoise = RunArtifacts.FixedNoise(replica, 5);
                var (files, _) = RunArtifacts.WriteSamples(replica, fixedNoise, dir.Path, 2);
                var png = Path.Combine(dir.Path, files[0]);
                return new FileInfo(png).Length > 0 ? $"{files[0]} ({new FileInfo(png).Length} bytes)" : throw new IOException("empty PNG");
            });
        }
        finally
        {
            replica?.Dispose();
            if (deterministic) Native.TorchRuntime.SetDeterministic(false);
        }
        log.WriteLine(failed == 0 ? $"self-test on {device}: all checks passed" : $"self-test on {device}: {failed} check(s) failed");
        return failed == 0;
    }

    sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("gancluster-selftest-").FullName;
        public void Dispose()
        {
            try { Directory.Delete(Path, true); } catch (IOException) { }
        }
    }
}
