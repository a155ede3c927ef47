using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>
/// The weights that a network's convolutions and linear layers compute with when they are not the fp32 masters
/// themselves: a bf16 copy (<c>training.precision = bf16</c>), NHWC strides (<c>training.memoryFormat =
/// channels_last</c>), or both. TorchSharp 0.107 has no autocast, so this is its manual equivalent:
/// <list type="bullet">
/// <item>one flat compute buffer [ComputeLength] holds every such weight; the layers' compute weights are leaf views
/// of it and their gradients views of a flat compute gradient, as <see cref="FlatNetwork"/> does for the masters;</item>
/// <item><see cref="Refresh"/> copies the masters in (one kernel when only the dtype differs: the masters' flat layout
/// puts these weights first), once per optimizer step, and <see cref="GradientsToMasters"/> copies the gradients back
/// into the fp32 <see cref="FlatNetwork.Grads"/>, which the all-reduce, the NaN guard and the optimizer read as in fp32;</item>
/// <item>For 2-D points (the MLP), the layer at the data's edge stays fp32 on its masters: D's first weight layer (it
/// reads real points and samples) and G's last (it writes them). bf16's 8-bit significand is coarser than such data:
/// ring8's modes have a standard deviation of 0.01 at radius 2, where bf16 values are 0.008–0.016 apart. Images are
/// 8-bit in [−1, 1], which bf16 holds, so DCGAN computes every convolution in bf16, as autocast does.</item>
/// <item>BatchNorm runs its own module: fp32 scale, shift and running statistics on bf16 activations (libtorch's mixed
/// batch_norm), so the statistics that checkpoints keep stay fp32.</item>
/// </list>
/// The module itself keeps the fp32 masters, so checkpoints, exports and sampling (<see cref="GanReplica.Generate"/>)
/// are the same whatever the precision.
/// </summary>
public sealed class ComputeNetwork : IDisposable
{
    readonly FlatNetwork _flat;
    readonly Tensor _values, _grads;    // [ComputeLength] in Dtype, every compute weight a view
    readonly Dictionary<nn.Module, (Parameter Weight, Parameter? Bias)> _layers = new(ReferenceEqualityComparer.Instance);
    // Each compute weight with its master, and their gradient views held (channels_last copies them per layer each update).
    readonly List<(Parameter Master, Parameter Compute, Tensor MasterGrad, Tensor ComputeGrad)> _pairs = [];
    readonly nn.Module[] _children;      // the Sequential's layers, in order
    readonly bool[] _fp32;               // per layer: a weight layer that computes on its fp32 masters
    long _refreshed = -1;

    /// <summary>Which side of the data a network is on: D's first weight layer and G's last stay fp32 (see the class notes).</summary>
    public enum Role { Generator, Discriminator }

    /// <param name="edge">The network's side, when its data layer stays fp32; null: every weight layer computes in <paramref name="dtype"/>.</param>
    public ComputeNetwork(Sequential module, Role? edge, FlatNetwork flat, ScalarType dtype, bool channelsLast)
    {
        _flat = flat;
        Dtype = dtype;
        ChannelsLast = channelsLast;
        _values = zeros(flat.ComputeLength, dtype, flat.Device).DetachFromDisposeScope();
        _grads = zeros(flat.ComputeLength, dtype, flat.Device).DetachFromDisposeScope();
        using var _ = no_grad();
        var fp32Layer = edge is { } side ? DataLayer(module, side) : null;
        _children = module.children().ToArray();
        _fp32 = new bool[_children.Length];
        for (var i = 0; i < _children.Length; i++)
        {
            var layer = _children[i];
            if (Weights(layer) is not { } w) continue;
            if (ReferenceEquals(layer, fp32Layer))
            {
                _fp32[i] = true;
                continue;
            }
            if (layer is Convolution c && (c.padding_mode != PaddingModes.Zeros || c.padding is null))
                throw new NotSupportedException("reduced-precision convolutions need explicit zero padding");
            _layers[layer] = (Leaf(w.Weight), w.Bias is null ? null : Leaf(w.Bias));
        }
        // Fails at once if a model gains a layer kind that Forward would not run with its compute weights.
        var covered = _pairs.Sum(p => p.Master.numel());
        if (covered != flat.ComputeLength)
            throw new InvalidOperationException($"compute weights cover {covered} of {flat.ComputeLength} elements: a convolution or linear layer is not a direct child of the Sequential");
    }

    public ScalarType Dtype { get; }
    public bool ChannelsLast { get; }

    /// <summary>The compute weights, for tests and <see cref="SetRequiresGrad"/>.</summary>
    public IEnumerable<Parameter> Parameters => _pairs.Select(p => p.Compute);

    /// <summary>D's first or G's last convolution or linear layer: the one that stays fp32.</summary>
    public static nn.Module? DataLayer(Sequential module, Role role)
    {
        var weighted = module.children().Where(m => Weights(m) is not null).ToList();
        return weighted.Count == 0 ? null : role == Role.Discriminator ? weighted[0] : weighted[^1];
    }

    /// <summary>
    /// The parameters of convolutions and linear layers, but for the <paramref name="edge"/>'s data layer when one is
    /// given: what computes in reduced precision, and what <see cref="FlatNetwork"/> lays first.
    /// </summary>
    public static HashSet<Parameter> ComputeParameters(nn.Module module, Role? edge = null)
    {
        var set = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        var fp32Layer = edge is { } r && module is Sequential sequential ? DataLayer(sequential, r) : null;
        foreach (var (_, m) in module.named_modules())
        {
            if (ReferenceEquals(m, fp32Layer) || Weights(m) is not { } w) continue;
            set.Add(w.Weight);
            if (w.Bias is not null) set.Add(w.Bias);
        }
        return set;
    }

    static (Parameter Weight, Parameter? Bias)? Weights(nn.Module m) => m switch
    {
        Convolution c => (c.weight, c.bias),   // Conv2d and ConvTranspose2d
        Linear l => (l.weight!, l.bias),
        _ => null,
    };

    /// <summary>A leaf tensor whose data and gradient are views of the compute buffers, laid out like its master.</summary>
    Parameter Leaf(Parameter master)
    {
        var start = _flat.StartOf(master);
        var leaf = new Parameter(empty(master.shape, Dtype, _flat.Device));
        leaf.set_(Layout(_values.narrow(0, start, master.numel()), master.shape));
        var grad = Layout(_grads.narrow(0, start, master.numel()), master.shape);
        leaf.grad = grad;
        var masterGrad = _flat.Grads.narrow(0, start, master.numel()).view(master.shape).DetachFromDisposeScope();
        _pairs.Add((master, leaf, masterGrad, grad));
        return leaf;
    }

    /// <summary>A flat slice seen as <paramref name="shape"/>: NCHW, or for 4-D weights with channels_last NHWC strides.</summary>
    Tensor Layout(Tensor slice, long[] shape)
    {
        if (!ChannelsLast || shape.Length != 4) return slice.view(shape).DetachFromDisposeScope();
        // [O, I, kH, kW] stored as [O, kH, kW, I]: the shape stays, the strides are [kH·kW·I, 1, kW·I, I].
        return slice.view(shape[0], shape[2], shape[3], shape[1]).permute(0, 3, 1, 2).DetachFromDisposeScope();
    }

    /// <summary>True when <paramref name="t"/> is 4-D with NHWC strides (what cuDNN's channels_last kernels look for).</summary>
    public static bool IsChannelsLast(Tensor t)
    {
        if (t.dim() != 4) return false;
        var (c, h, w) = (t.shape[1], t.shape[2], t.shape[3]);
        var s = t.stride();
        // Strides of size-1 dimensions do not matter (PyTorch's channels_last check ignores them too).
        return (c == 1 || s[1] == 1) && (w == 1 || s[3] == c) && (h == 1 || s[2] == w * c) && (t.shape[0] == 1 || s[0] == h * w * c);
    }

    /// <summary>Copies the masters in when a step (or a load) changed them since the last copy.</summary>
    public void Refresh()
    {
        if (_refreshed == _flat.Version) return;
        using var _ = no_grad();
        if (!ChannelsLast)
        {
            using var masters = _flat.Values.narrow(0, 0, _flat.ComputeLength);
            _values.copy_(masters);   // one kernel: converts to bf16
        }
        else
        {
            foreach (var (master, compute, _, _) in _pairs) compute.copy_(master);   // one per layer: NCHW → NHWC (and the dtype)
        }
        _refreshed = _flat.Version;
    }

    public void ZeroGrad() => _grads.zero_();

    /// <summary>The compute gradients into the masters' fp32 gradients (after the backward pass).</summary>
    public void GradientsToMasters()
    {
        using var _ = no_grad();
        if (!ChannelsLast)
        {
            using var masters = _flat.Grads.narrow(0, 0, _flat.ComputeLength);
            masters.copy_(_grads);
        }
        else
        {
            foreach (var (_, _, masterGrad, computeGrad) in _pairs) masterGrad.copy_(computeGrad);
        }
    }

    public void SetRequiresGrad(bool on)
    {
        foreach (var (_, compute, _, _) in _pairs) compute.requires_grad_(on);
    }

    /// <summary>
    /// <paramref name="x"/> in <paramref name="dtype"/> (the compute dtype by default) and, for 4-D inputs with
    /// channels_last, NHWC strides: one kernel, or none when it already is (autograd-aware, so G's output can feed D).
    /// </summary>
    public Tensor Input(Tensor x, ScalarType? dtype = null)
    {
        var type = dtype ?? Dtype;
        var nhwc = ChannelsLast && x.dim() == 4;
        if (x.dtype == type && (!nhwc || IsChannelsLast(x))) return x;
        if (!nhwc) return x.to_type(type);
        var (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return empty_strided([n, c, h, w], [h * w * c, 1, w * c, c], type, x.device).copy_(x);
    }

    /// <summary>The Sequential's forward pass with the compute weights (the masters refreshed first if they changed).</summary>
    public Tensor Forward(Tensor x)
    {
        Refresh();
        for (var i = 0; i < _children.Length; i++)
        {
            var layer = _children[i];
            // Each weight layer gets its input in its own dtype: the compute dtype, or fp32 at the data's edge.
            if (_fp32[i]) x = Input(x, ScalarType.Float32);
            else if (_layers.ContainsKey(layer)) x = Input(x);
            x = layer switch
            {
                Conv2d c when _layers.TryGetValue(c, out var p) =>
                    nn.functional.conv2d(x, p.Weight, p.Bias, c.stride, c.padding!, c.dilation, c.groups),
                ConvTranspose2d c when _layers.TryGetValue(c, out var p) =>
                    nn.functional.conv_transpose2d(x, p.Weight, p.Bias, c.stride, c.padding!, c.output_padding, c.dilation, c.groups),
                Linear l when _layers.TryGetValue(l, out var p) => nn.functional.linear(x, p.Weight, p.Bias),
                nn.Module<Tensor, Tensor> m => m.forward(x),
                _ => throw new InvalidOperationException($"{layer.GetType().Name} is not a tensor-to-tensor layer"),
            };
        }
        return x;
    }

    public void Dispose()
    {
        foreach (var (_, compute, masterGrad, computeGrad) in _pairs)
        {
            compute.Dispose();
            masterGrad.Dispose();
            computeGrad.Dispose();
        }
        _values.Dispose();
        _grads.Dispose();
    }
}
