using GanCluster.Training.Models;
using GanCluster.Training.Spec;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>Means of one logging window, read from the device once per window.</summary>
public readonly record struct StepStats(double LossD, double LossG, double DReal, double DFake, int DSteps, int GSteps);

/// <summary>
/// One replica of G and D with their optimizers: the GAN step split into compute-gradients and apply-gradients,
/// so that a cluster can average the flat gradient buffers in between. Not thread-safe: TorchSharp's dispose
/// scopes are thread-static, so one thread owns a replica.
/// </summary>
public sealed class GanReplica : IDisposable
{
    readonly TrainingSpec _training;
    readonly Generator _noise;
    readonly Tensor _statSums;   // [lossD, D(x), D(G(z)), lossG] summed over the window, on the device
    int _dSteps, _gSteps;
    Tensor? _fakeForG;            // the last D sub-step's fake with its graph, when gNoise = reuse
    readonly ComputeNetwork? _computeG, _computeD;   // null: G and D compute with their fp32 masters
    FlatBuffer? _dGrads, _gGrads, _gValues, _dValues, _buffers;

    public GanReplica(RunSpec spec, Device device, long noiseSeed)
    {
        Spec = spec;
        _training = spec.Training;
        Device = device;
        // oneDNN's convolutions computed wrong gradients on the CPU (see UseNativeCpuConvolutions): libtorch's own kernels instead.
        if (device.type == DeviceType.CPU && !Native.TorchRuntime.UseNativeCpuConvolutions() && spec.Model.Kind == "dcgan")
            throw new NotSupportedException("DCGAN on the CPU needs libtorch's at::Context::setUserEnabledMkldnn (oneDNN's convolutions are wrong on some CPUs), which this libtorch does not export");
        var m = spec.Model;
        Nz = m.ResolvedNz;
        IsImage = m.Kind == "dcgan";
        // Initial weights from the run's seed through a private generator: the same on every replica and in every
        // process, whatever else draws from torch's global RNG meanwhile.
        using (var init = new Generator((ulong)spec.Training.Seed))
        {
            if (IsImage)
            {
                var nc = spec.Dataset.ResolvedChannels;
                G = Dcgan.Generator(spec.Dataset.ImageSize, Nz, m.ResolvedNgf, nc, init);
                D = Dcgan.Discriminator(spec.Dataset.ImageSize, m.ResolvedNdf, nc, init);
            }
            else
            {
                G = Mlp.Generator(Nz, m.ResolvedNgf, init);
                D = Mlp.Discriminator(m.ResolvedNdf, init);
            }
        }
        G.to(device);
        D.to(device);
        OptD = MakeOptimizer(D, _training.OptimizerD, _training.LrD, _training.MomentumD);
        OptG = MakeOptimizer(G, _training.OptimizerG, _training.LrG, _training.MomentumG);
        // 2-D points keep D's first and G's last layer fp32; 8-bit images fit bf16 (see ComputeNetwork).
        ComputeNetwork.Role? EdgeOf(ComputeNetwork.Role side) => IsImage ? null : side;
        var (dEdge, gEdge) = (EdgeOf(ComputeNetwork.Role.Discriminator), EdgeOf(ComputeNetwork.Role.Generator));
        FlatD = new FlatNetwork(D, OptD, _training.OptimizerD, _training.Beta1, _training.Beta2, _training.MomentumD, device,
            ComputeNetwork.ComputeParameters(D, dEdge));
        FlatG = new FlatNetwork(G, OptG, _training.OptimizerG, _training.Beta1, _training.Beta2, _training.MomentumG, device,
            ComputeNetwork.ComputeParameters(G, gEdge));
        if (_training.Precision != "fp32" || _training.MemoryFormat != "contiguous")
        {
            var dtype = _training.Precision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
            var channelsLast = _training.MemoryFormat == "channels_last";
            _computeG = new ComputeNetwork(G, gEdge, FlatG, dtype, channelsLast);
            _computeD = new ComputeNetwork(D, dEdge, FlatD, dtype, channelsLast);
        }
        // A CPU generator whatever the device: TorchSharp 0.107's Generator is always a CPU one, and randn on CUDA refuses
        // it. Noise is drawn on the CPU and copied, so CPU and CUDA runs draw the same z and checkpoints keep one format.
        _noise = new Generator((ulong)noiseSeed);
        _statSums = zeros(4, ScalarType.Float32, device).DetachFromDisposeScope();
    }

    public RunSpec Spec { get; }
    public Device Device { get; }
    public int Nz { get; }
    public bool IsImage { get; }
    public Sequential G { get; }
    public Sequential D { get; }
    public OptimizerHelper OptD { get; }
    public OptimizerHelper OptG { get; }
    /// <summary>D's parameters, gradients and optimizer state as flat buffers (the optimizer steps there).</summary>
    public FlatNetwork FlatD { get; }
    public FlatNetwork FlatG { get; }
    /// <summary>G's and D's compute weights when they are not the masters (bf16 or channels_last), else null.</summary>
    public ComputeNetwork? ComputeG => _computeG;
    public ComputeNetwork? ComputeD => _computeD;
    /// <summary>The noise generator (its state is part of a checkpoint).</summary>
    public Generator NoiseGenerator => _noise;

    /// <summary>D's and G's gradients in host buffers: what a replica with peers all-reduces.</summary>
    public FlatBuffer DGrads => _dGrads ??= new FlatBuffer(FlatD);
    public FlatBuffer GGrads => _gGrads ??= new FlatBuffer(FlatG);

    OptimizerHelper MakeOptimizer(nn.Module module, string kind, double lr, double momentum) => kind switch
    {
        "sgd" => optim.SGD(module.parameters(), lr, momentum),
        _ => optim.Adam(module.parameters(), lr, _training.Beta1, _training.Beta2),
    };

    /// <summary>
    /// Noise z: [n, nz, 1, 1] for DCGAN, [n, nz] for the MLP, drawn from a CPU generator and copied to the device
    /// through pinned memory without blocking (issued before D's forward pass, the copy overlaps it).
    /// </summary>
    public Tensor SampleNoise(int n, Generator? generator = null) => DrawNormal(IsImage ? [n, Nz, 1, 1] : [n, Nz], generator ?? _noise, Device);

    /// <summary>
    /// Standard normal values of <paramref name="shape"/> from a CPU <paramref name="generator"/>, on <paramref name="device"/>.
    /// The only way to draw seeded numbers for a device here: a generator never goes with a tensor factory on a GPU.
    /// </summary>
    public static Tensor DrawNormal(long[] shape, Generator generator, Device device)
    {
        var host = randn(shape, ScalarType.Float32, CPU, generator: generator);
        if (device.type == DeviceType.CPU) return host;
        using (host)
        {
            using var pinned = host.pin_memory();
            // libtorch's pinned-memory allocator keeps the block until the asynchronous copy has read it.
            return pinned.to(device, non_blocking: true);
        }
    }

    /// <summary>Uniform values in [0, 1) of <paramref name="shape"/> from a CPU <paramref name="generator"/>, on <paramref name="device"/>.</summary>
    public static Tensor DrawUniform(long[] shape, Generator generator, Device device)
    {
        var host = rand(shape, ScalarType.Float32, CPU, generator: generator);
        if (device.type == DeviceType.CPU) return host;
        using (host) return host.to(device);
    }

    /// <summary>
    /// D's gradients for one sub-step on a real minibatch [B, …] (on this device) and fresh noise.
    /// Leaves them in D's .grad; G is not touched. <paramref name="last"/> marks the k-th sub-step.
    /// </summary>
    /// <param name="noise">null: drawn from this replica's generator; given: z for this batch (to replay another split of a batch).</param>
    public void ComputeDiscriminatorGradients(Tensor real, bool last, Tensor? noise = null)
    {
        using var scope = NewDisposeScope();
        var b = (int)real.shape[0];
        var z = noise ?? SampleNoise(b);                         // [B, nz, (1, 1)]: its copy overlaps what follows
        FlatD.ZeroGrad();
        _computeD?.ZeroGrad();

        var realLogits = ForwardD(real);                         // [B] fp32
        Tensor fake;
        if (last && _training.GNoise == "reuse")
        {
            _fakeForG?.Dispose();
            _fakeForG = ForwardG(z).DetachFromDisposeScope();    // kept, with its graph, for the G update
            fake = _fakeForG.detach();
        }
        else
        {
            using (no_grad()) fake = ForwardG(z);
        }
        var fakeLogits = ForwardD(fake);                         // [B] fp32
        var lossD = GanLoss.Discriminator(realLogits, fakeLogits);
        lossD.backward();
        _computeD?.GradientsToMasters();

        using (no_grad())
        {
            _statSums[0].add_(lossD.detach(), Scalars.One);
            _statSums[1].add_(realLogits.detach().sigmoid().mean(), Scalars.One);
            _statSums[2].add_(fakeLogits.detach().sigmoid().mean(), Scalars.One);
        }
        _dSteps++;
    }

    /// <summary>G's gradients for one update on a batch of <paramref name="batchSize"/>; D's parameters get none.</summary>
    public void ComputeGeneratorGradients(int batchSize, Tensor? noise = null)
    {
        using var scope = NewDisposeScope();
        FlatG.ZeroGrad();
        _computeG?.ZeroGrad();
        var fake = _fakeForG is not null && _fakeForG.shape[0] == batchSize ? _fakeForG : ForwardG(noise ?? SampleNoise(batchSize));

        // D's weights need no gradient here: skipping them saves a third of D's backward pass.
        SetDRequiresGrad(false);
        try
        {
            var lossG = GanLoss.Generator(ForwardD(fake), _training.Loss);
            lossG.backward();
            _computeG?.GradientsToMasters();
            using (no_grad()) _statSums[3].add_(lossG.detach(), Scalars.One);
        }
        finally
        {
            SetDRequiresGrad(true);
            _fakeForG?.Dispose();
            _fakeForG = null;
        }
        _gSteps++;
    }

    /// <summary>D's logits [B] in fp32 for images or points [B, …] (fp32, or G's output in the compute dtype).</summary>
    Tensor ForwardD(Tensor x) => _computeD is null ? D.forward(x) : _computeD.Forward(x).to_type(ScalarType.Float32);

    /// <summary>G's output for noise z (fp32): in the compute dtype and layout when G computes in them.</summary>
    Tensor ForwardG(Tensor z) => _computeG is null ? G.forward(z) : _computeG.Forward(z);

    void SetDRequiresGrad(bool on)
    {
        foreach (var p in D.parameters()) p.requires_grad_(on);
        _computeD?.SetRequiresGrad(on);
    }

    /// <summary>After G's or D's weights were loaded into the modules (checkpoints, state blobs): the compute copies are stale.</summary>
    public void WeightsLoaded()
    {
        FlatG.ValuesChanged();
        FlatD.ValuesChanged();
    }

    /// <summary>Sets both optimizers' learning rates for an iteration (training.lrDecay).</summary>
    public void SetIteration(long iteration)
    {
        var f = _training.LrFactor(iteration);
        foreach (var g in OptD.ParamGroups) g.LearningRate = _training.LrD * f;
        foreach (var g in OptG.ParamGroups) g.LearningRate = _training.LrG * f;
    }

    /// <summary>Adam/SGD step on D with the gradients in D's .grad; <paramref name="ok"/>: see <see cref="FlatNetwork.Step"/>.</summary>
    public void ApplyDiscriminator(Tensor? ok = null) => FlatD.Step(ok);

    /// <summary>Adam/SGD step on G with the gradients in G's .grad.</summary>
    public void ApplyGenerator(Tensor? ok = null) => FlatG.Step(ok);

    /// <summary>Restarts the noise stream from <paramref name="seed"/> (a rank's stream after a re-form).</summary>
    public void ReseedNoise(long seed) => _noise.manual_seed(seed);

    /// <summary>
    /// G and D (weights and BatchNorm statistics) and both optimizer states as one blob: what a new formation's rank 0
    /// hands every other rank. Written and read in the same order.
    /// </summary>
    public byte[] SaveState()
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true))
        {
            SaveModule(G, FlatG, w);
            SaveModule(D, FlatD, w);
            FlatD.SaveOptimizerState(w);
            FlatG.SaveOptimizerState(w);
        }
        return ms.ToArray();
    }

    /// <summary>G's state dict as <c>G.save</c> writes it, from a few bulk device-to-host copies (see <see cref="SaveModule"/>).</summary>
    public void SaveG(BinaryWriter w) => SaveModule(G, FlatG, w);
    public void SaveD(BinaryWriter w) => SaveModule(D, FlatD, w);

    /// <summary>
    /// A module's state dict in TorchSharp's format (<c>Module.save</c>), from one device-to-host copy of its flat
    /// parameters and one per buffer kind (BatchNorm statistics, batch counters) instead of one blocking copy per tensor.
    /// </summary>
    static void SaveModule(nn.Module module, FlatNetwork flat, BinaryWriter w)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var byName = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var values = flat.Values.cpu();
        foreach (var (name, p) in module.named_parameters())
            byName[name] = values.narrow(0, flat.StartOf(p), p.numel()).view(p.shape);
        foreach (var group in module.named_buffers().GroupBy(b => b.Item2.dtype))
        {
            var list = group.ToList();
            var host = cat(list.Select(b => b.Item2.reshape(-1)).ToList(), 0).cpu();
            long at = 0;
            foreach (var (name, b) in list)
            {
                byName[name] = host.narrow(0, at, b.numel()).view(b.shape);
                at += b.numel();
            }
        }
        var sd = module.state_dict();
        var ordered = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var key in sd.Keys)
            ordered[key] = byName.TryGetValue(key, out var t) ? t : throw new InvalidOperationException($"state dict entry {key} is neither a parameter nor a buffer");
        nn.Module.save_state_dict(w, ordered);
    }

    /// <summary>Both optimizers' states as save_state_dict writes them (after the flat step counts are synced).</summary>
    public void SaveOptD(BinaryWriter w) => FlatD.SaveOptimizerState(w);
    public void SaveOptG(BinaryWriter w) => FlatG.SaveOptimizerState(w);

    /// <summary>
    /// SHA-256 of G's and D's parameters (and, with <paramref name="withBuffers"/>, their floating-point buffers: the
    /// BatchNorm statistics), through host buffers allocated once: identical on every replica that holds the same model.
    /// </summary>
    public string Checksum(bool withBuffers = false)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var f in new[] { _gValues ??= new FlatBuffer(FlatG), _dValues ??= new FlatBuffer(FlatD) })
        {
            f.GatherValues();
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f.Span));
        }
        if (withBuffers && Buffers.Length > 0)
        {
            Buffers.GatherValues();
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Buffers.Span));
        }
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>G's and D's floating-point buffers (BatchNorm running statistics) in one flat host buffer.</summary>
    public FlatBuffer Buffers => _buffers ??= new FlatBuffer(G.buffers().Concat(D.buffers()).Where(b => b.is_floating_point()), Device);

    public void LoadState(byte[] blob)
    {
        using var r = new BinaryReader(new MemoryStream(blob, writable: false));
        G.load(r);
        D.load(r);
        WeightsLoaded();
        OptD.load_state_dict(r);
        OptG.load_state_dict(r);
        OptimizerStateLoaded();
    }

    /// <summary>After either optimizer's load_state_dict: the loaded moments go into the flat buffers.</summary>
    public void OptimizerStateLoaded()
    {
        FlatD.StateLoaded();
        FlatG.StateLoaded();
    }

    /// <summary>Means since the last call (one device sync).</summary>
    public StepStats TakeStats()
    {
        var s = _statSums.cpu().data<float>().ToArray();
        _statSums.zero_();
        var d = Math.Max(_dSteps, 1);
        var g = Math.Max(_gSteps, 1);
        var stats = new StepStats(s[0] / d, s[3] / g, s[1] / d, s[2] / d, _dSteps, _gSteps);
        _dSteps = _gSteps = 0;
        return stats;
    }

    /// <summary>G(z) in eval mode (BatchNorm running statistics), without gradients.</summary>
    public Tensor Generate(Tensor z)
    {
        using var _ = no_grad();
        G.eval();
        try { return G.forward(z); }
        finally { G.train(); }
    }

    public void Dispose()
    {
        _fakeForG?.Dispose();
        _computeG?.Dispose();
        _computeD?.Dispose();
        _dGrads?.Dispose();
        _gGrads?.Dispose();
        _gValues?.Dispose();
        _dValues?.Dispose();
        _buffers?.Dispose();
        _statSums.Dispose();
        OptD.Dispose();
        OptG.Dispose();
        FlatD.Dispose();
        FlatG.Dispose();
        G.Dispose();
        D.Dispose();
        _noise.Dispose();
    }
}
