using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Training;

/// <summary>
/// One network's parameters, gradients and optimizer state, each laid end to end in one flat device tensor; every
/// layer's parameter and .grad are views into them (autograd accumulates into an existing .grad in place). An update
/// is then a few whole-buffer kernels (zeroing the gradients: 1, Adam: 6) instead of that many per parameter tensor,
/// and the cluster moves gradients with one copy each way. On a GPU at small batch, per-kernel launch cost is much of
/// the gap to PyTorch's multi-tensor optimizers.
/// <para>
/// The TorchSharp optimizer stays for its learning rate (set per iteration by lrDecay) and its checkpoint format: its
/// per-parameter state tensors are views of the flat moments, so save_state_dict/load_state_dict read and write them.
/// </para>
/// </summary>
public sealed class FlatNetwork : IDisposable
{
    const double AdamEps = 1e-8;   // TorchSharp's and PyTorch's default

    readonly Parameter[] _params;
    readonly long[] _offsets;
    readonly OptimizerHelper _optimizer;
    readonly bool _adam;
    readonly double _beta1, _beta2, _momentum;
    readonly Tensor? _first, _second;           // Adam: exp_avg, exp_avg_sq; SGD: momentum buffer (first)
    readonly Tensor[] _firstViews, _secondViews;
    IList<OptimizerState> _states;              // the optimizer's live per-parameter states; read again after a load
    long _step;
    bool _momentumStarted;

    /// <param name="kind"><c>adam</c> or <c>sgd</c>, as <paramref name="optimizer"/> was made.</param>
    public FlatNetwork(nn.Module module, OptimizerHelper optimizer, string kind, double beta1, double beta2, double momentum, Device device)
    {
        _params = module.parameters().ToArray();
        _optimizer = optimizer;
        _adam = kind != "sgd";
        (_beta1, _beta2, _momentum) = (beta1, beta2, momentum);
        _offsets = new long[_params.Length + 1];
        for (var i = 0; i < _params.Length; i++) _offsets[i + 1] = _offsets[i] + _params[i].numel();
        Length = _offsets[^1];

        Values = empty(Length, ScalarType.Float32, device).DetachFromDisposeScope();
        Grads = zeros(Length, ScalarType.Float32, device).DetachFromDisposeScope();
        using (no_grad())
        {
            for (var i = 0; i < _params.Length; i++)
            {
                var value = View(Values, i);
                value.copy_(_params[i]);
                _params[i].set_(value);                // the parameter now lives in Values
                _params[i].grad = View(Grads, i);      // and its gradient in Grads
            }
        }
        if (_adam || _momentum != 0) _first = zeros(Length, ScalarType.Float32, device).DetachFromDisposeScope();
        if (_adam) _second = zeros(Length, ScalarType.Float32, device).DetachFromDisposeScope();
        _firstViews = _first is null ? [] : Enumerable.Range(0, _params.Length).Select(i => View(_first, i)).ToArray();
        _secondViews = _second is null ? [] : Enumerable.Range(0, _params.Length).Select(i => View(_second, i)).ToArray();
        _states = States();
        if (_adam) BindAdamState();
    }

    /// <summary>All parameters end to end [Length], in <c>parameters()</c> order.</summary>
    public Tensor Values { get; }
    /// <summary>All gradients end to end [Length].</summary>
    public Tensor Grads { get; }
    public long Length { get; }

    Tensor View(Tensor flat, int i) =>
        flat.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]).view(_params[i].shape).DetachFromDisposeScope();

    IList<OptimizerState> States()
    {
        var states = _optimizer.state_dict().State;
        if (states.Count != _params.Length)
            throw new InvalidOperationException($"the optimizer holds {states.Count} parameter states for {_params.Length} parameters");
        return states;
    }

    /// <summary>Points the TorchSharp optimizer's per-parameter moments at the flat ones (copying what they hold).</summary>
    void BindAdamState()
    {
        using var _ = no_grad();
        for (var i = 0; i < _states.Count; i++)
        {
            var s = (Adam.State)_states[i];
            if (!ReferenceEquals(s.exp_avg, _firstViews[i]))
            {
                _firstViews[i].copy_(s.exp_avg);
                s.exp_avg.Dispose();
                s.exp_avg = _firstViews[i];
            }
            if (!ReferenceEquals(s.exp_avg_sq, _secondViews[i]))
            {
                _secondViews[i].copy_(s.exp_avg_sq);
                s.exp_avg_sq.Dispose();
                s.exp_avg_sq = _secondViews[i];
            }
            _step = s.step;
        }
    }

    /// <summary>After the optimizer's load_state_dict: takes the loaded moments into the flat buffers.</summary>
    public void StateLoaded()
    {
        _states = States();
        if (_adam)
        {
            BindAdamState();
            return;
        }
        if (_first is null) return;
        using var _ = no_grad();
        for (var i = 0; i < _states.Count; i++)
        {
            var s = (SGD.State)_states[i];
            if (s.momentum_buffer is null || ReferenceEquals(s.momentum_buffer, _firstViews[i])) continue;
            _firstViews[i].copy_(s.momentum_buffer);
            s.momentum_buffer.Dispose();
            s.momentum_buffer = _firstViews[i];
            _momentumStarted = true;
        }
    }

    public void ZeroGrad() => Grads.zero_();

    /// <summary>One optimizer step over the whole network with the gradients in <see cref="Grads"/>.</summary>
    public void Step()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var lr = _optimizer.ParamGroups.First().LearningRate;
        if (_adam)
        {
            // Adam (Kingma & Ba), as torch.optim.Adam without weight decay or amsgrad.
            _step++;
            var bias1 = 1 - Math.Pow(_beta1, _step);
            var bias2 = 1 - Math.Pow(_beta2, _step);
            _first!.mul_(_beta1).add_(Grads, alpha: 1 - _beta1);
            _second!.mul_(_beta2).addcmul_(Grads, Grads, value: 1 - _beta2);
            var denom = _second.sqrt().div_(Math.Sqrt(bias2)).add_(AdamEps);
            Values.addcdiv_(_first, denom, value: -lr / bias1);
            foreach (var s in _states) ((Adam.State)s).step = _step;
        }
        else if (_first is null)
        {
            Values.add_(Grads, alpha: -lr);
        }
        else
        {
            // SGD with momentum, as torch.optim.SGD (no dampening): the buffer starts as the first gradient.
            if (_momentumStarted) _first.mul_(_momentum).add_(Grads);
            else
            {
                _first.copy_(Grads);
                for (var i = 0; i < _states.Count; i++) ((SGD.State)_states[i]).momentum_buffer = _firstViews[i];
                _momentumStarted = true;
            }
            Values.add_(_first, alpha: -lr);
        }
    }

    public void Dispose()
    {
        Values.Dispose();
        Grads.Dispose();
        _first?.Dispose();
        _second?.Dispose();
    }
}
