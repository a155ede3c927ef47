using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>
/// One network's parameters, gradients and optimizer state, each laid end to end in one flat device tensor; every
/// layer's parameter and .grad are views into them (autograd accumulates into an existing .grad in place). An update
/// is then a few whole-buffer kernels (zeroing the gradients: 1, Adam: 8) instead of that many per parameter tensor,
/// and the cluster moves gradients with one copy each way. On a GPU at small batch, per-kernel launch cost is much of
/// the gap to PyTorch's multi-tensor optimizers.
/// <para>
/// The TorchSharp optimizer stays for its learning rate (set per iteration by lrDecay) and its checkpoint format: its
/// per-parameter state tensors are views of the flat moments, so save_state_dict/load_state_dict read and write them.
/// Those view objects are the optimizer's own (TorchSharp's SGD disposes its momentum buffer on load); this class
/// computes with views of its own, so nothing the optimizer does to its objects can break a step.
/// </para>
/// </summary>
public sealed class FlatNetwork : IDisposable
{
    const double AdamEps = 1e-8;   // TorchSharp's and PyTorch's default

    readonly Parameter[] _params;
    readonly long[] _start;                     // each parameter's first element in the flat buffers
    readonly Dictionary<Parameter, int> _index = new(ReferenceEqualityComparer.Instance);
    readonly OptimizerHelper _optimizer;
    readonly bool _adam;
    readonly double _beta1, _beta2, _momentum;
    // The step's constant coefficients as Scalars held for the network's life (see Scalars).
    readonly Scalar _sBeta1, _sBeta2, _sOneMinusBeta1, _sOneMinusBeta2, _sBeta1MinusOne, _sBeta2MinusOne, _sLogBeta1, _sLogBeta2,
        _sMomentum, _sMomentumMinusOne, _sEps, _sTiny;
    readonly Tensor? _first, _second;           // Adam: exp_avg, exp_avg_sq; SGD: momentum buffer (first)
    readonly Tensor?[] _stateFirst, _stateSecond; // the view objects handed to the optimizer's states (null: none handed)
    IList<OptimizerState> _states;              // the optimizer's live per-parameter states; read again after a load
    long _step;                                 // Adam steps taken (host count; stale while _deviceStep is in use)
    Tensor? _deviceStep;                        // Adam steps taken, float64 [] on the device: guarded steps never sync
    bool _momentumStarted;

    /// <param name="kind"><c>adam</c> or <c>sgd</c>, as <paramref name="optimizer"/> was made.</param>
    /// <param name="computeFirst">The parameters laid first (<see cref="ComputeLength"/>); default: every convolution and linear one.</param>
    public FlatNetwork(nn.Module module, OptimizerHelper optimizer, string kind, double beta1, double beta2, double momentum, Device device,
        ISet<Parameter>? computeFirst = null)
    {
        _params = module.parameters().ToArray();
        _optimizer = optimizer;
        _adam = kind != "sgd";
        (_beta1, _beta2, _momentum) = (beta1, beta2, momentum);
        (_sBeta1, _sBeta2, _sOneMinusBeta1, _sOneMinusBeta2) = (Scalars.Of(beta1), Scalars.Of(beta2), Scalars.Of(1 - beta1), Scalars.Of(1 - beta2));
        (_sBeta1MinusOne, _sBeta2MinusOne) = (Scalars.Of(beta1 - 1), Scalars.Of(beta2 - 1));
        (_sLogBeta1, _sLogBeta2) = (Scalars.Of(Math.Log(beta1)), Scalars.Of(Math.Log(beta2)));
        (_sMomentum, _sMomentumMinusOne) = (Scalars.Of(momentum), Scalars.Of(momentum - 1));
        (_sEps, _sTiny) = (Scalars.Of(AdamEps), Scalars.Of(1e-30));
        // Convolution and linear weights first, then the rest (BatchNorm's scale and shift, the fp32 data layer): a
        // reduced-precision copy of the weights that compute in it is then one prefix of the buffer, refreshed with one
        // kernel (ComputeNetwork).
        var computes = computeFirst ?? ComputeNetwork.ComputeParameters(module);
        _start = new long[_params.Length];
        long at = 0;
        foreach (var pass in new[] { true, false })
        {
            for (var i = 0; i < _params.Length; i++)
            {
                if (computes.Contains(_params[i]) != pass) continue;
                _start[i] = at;
                at += _params[i].numel();
            }
            if (pass) ComputeLength = at;
        }
        for (var i = 0; i < _params.Length; i++) _index[_params[i]] = i;
        Length = at;
        Device = device;

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
        _stateFirst = new Tensor?[_params.Length];
        _stateSecond = new Tensor?[_params.Length];
        _states = States();
        TakeOptimizerState();
    }

    /// <summary>All parameters end to end [Length], in <c>parameters()</c> order.</summary>
    public Tensor Values { get; }
    /// <summary>All gradients end to end [Length].</summary>
    public Tensor Grads { get; }
    public long Length { get; }
    /// <summary>Elements of the parameters laid first (the ones that compute in reduced precision; see the constructor).</summary>
    public long ComputeLength { get; private set; }
    public Device Device { get; }

    /// <summary>Where <paramref name="parameter"/> (one of this network's) starts in the flat buffers.</summary>
    public long StartOf(Parameter parameter) => _start[_index[parameter]];

    /// <summary>Bumped whenever <see cref="Values"/> may have changed: a step, a load, a broadcast (see <see cref="ValuesChanged"/>).</summary>
    public long Version { get; private set; }

    /// <summary>Says that something other than <see cref="Step"/> wrote the parameters (a load or a broadcast).</summary>
    public void ValuesChanged() => Version++;

    /// <summary>Adam's step count (reads the device once when guarded steps were taken).</summary>
    public long StepCount => _deviceStep is null ? _step : (long)_deviceStep.item<double>();

    Tensor View(Tensor flat, int i) =>
        flat.narrow(0, _start[i], _params[i].numel()).view(_params[i].shape).DetachFromDisposeScope();

    IList<OptimizerState> States()
    {
        var states = _optimizer.state_dict().State;
        if (states.Count != _params.Length)
            throw new InvalidOperationException($"the optimizer holds {states.Count} parameter states for {_params.Length} parameters");
        return states;
    }

    /// <summary>
    /// Moves what the optimizer's states hold into the flat moments and hands each state fresh views of them: at
    /// construction (zeros) and after every load_state_dict (whatever TorchSharp loaded, in place or as new tensors).
    /// </summary>
    void TakeOptimizerState()
    {
        using var _ = no_grad();
        for (var i = 0; i < _states.Count; i++)
        {
            if (_adam)
            {
                var s = (Adam.State)_states[i];
                s.exp_avg = Take(s.exp_avg, _first!, _stateFirst, i);
                s.exp_avg_sq = Take(s.exp_avg_sq, _second!, _stateSecond, i);
                _step = s.step;
            }
            else if (_first is not null)
            {
                var s = (SGD.State)_states[i];
                if (s.momentum_buffer is null)
                {
                    // Saved before its first step: the buffer starts again from the next gradient.
                    using (var v = View(_first, i)) v.zero_();
                    _stateFirst[i] = null;
                    _momentumStarted = false;
                    continue;
                }
                s.momentum_buffer = Take(s.momentum_buffer, _first, _stateFirst, i);
                _momentumStarted = true;
            }
        }
        if (_deviceStep is not null)
        {
            using var step = Scalars.Of(_step);
            _deviceStep.fill_(step);
        }
    }

    /// <summary>The state's tensor copied into <paramref name="flat"/> unless it already is the view handed out; returns that view.</summary>
    Tensor Take(Tensor held, Tensor flat, Tensor?[] handed, int i)
    {
        if (handed[i] is { } mine && ReferenceEquals(mine, held)) return mine;
        using (var v = View(flat, i)) v.copy_(held);
        held.Dispose();
        handed[i]?.Dispose();   // may already be disposed by TorchSharp; disposing twice is harmless   // TorchSharp's own tensor (zeros, or just loaded): not ours, not used again
        return handed[i] = View(flat, i);
    }

    /// <summary>After the optimizer's load_state_dict: takes the loaded moments into the flat buffers.</summary>
    public void StateLoaded()
    {
        Version++;
        _states = States();
        TakeOptimizerState();
    }

    /// <summary>Brings the optimizer's states up to date with the flat ones (Adam's step, SGD's started buffers) before they are saved.</summary>
    public void SyncState()
    {
        if (_adam)
        {
            var step = StepCount;
            _step = step;
            foreach (var s in _states) ((Adam.State)s).step = step;
        }
        else if (_first is not null && _momentumStarted)
        {
            for (var i = 0; i < _states.Count; i++)
            {
                var s = (SGD.State)_states[i];
                if (s.momentum_buffer is null || !ReferenceEquals(s.momentum_buffer, _stateFirst[i]))
                    s.momentum_buffer = _stateFirst[i] = View(_first, i);
            }
        }
    }

    public void ZeroGrad() => Grads.zero_();

    /// <summary>One optimizer step over the whole network with the gradients in <see cref="Grads"/>.</summary>
    /// <param name="ok">
    /// null: always step. A bool [] tensor on the device: step only where it is true, and otherwise leave parameters,
    /// moments and the step count exactly as they are, without reading it on the host (the local NaN guard).
    /// </param>
    public void Step(Tensor? ok = null)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Version++;
        var lr = _optimizer.ParamGroups.First().LearningRate;
        if (ok is not null || _deviceStep is not null)
        {
            GuardedStep(ok, lr);
            return;
        }
        if (_adam)
        {
            // Adam (Kingma & Ba), as torch.optim.Adam without weight decay or amsgrad.
            _step++;
            var bias1 = 1 - Math.Pow(_beta1, _step);
            var bias2 = 1 - Math.Pow(_beta2, _step);
            using var sqrtBias2 = Scalars.Of(Math.Sqrt(bias2));
            using var stepSize = Scalars.Of(-lr / bias1);
            _first!.mul_(_sBeta1).add_(Grads, alpha: _sOneMinusBeta1);
            _second!.mul_(_sBeta2).addcmul_(Grads, Grads, value: _sOneMinusBeta2);
            var denom = _second.sqrt().div_(sqrtBias2).add_(_sEps, Scalars.One);
            Values.addcdiv_(_first, denom, value: stepSize);
        }
        else
        {
            using var minusLr = Scalars.Of(-lr);
            if (_first is null)
            {
                Values.add_(Grads, alpha: minusLr);
            }
            else
            {
                // SGD with momentum, as torch.optim.SGD (no dampening): the buffer starts as the first gradient.
                if (_momentumStarted) _first.mul_(_sMomentum).add_(Grads, Scalars.One);
                else
                {
                    _first.copy_(Grads);
                    _momentumStarted = true;
                    SyncState();   // the states now hold a buffer (a host-side change only)
                }
                Values.add_(_first, alpha: minusLr);
            }
        }
        SyncStateCheap();
    }

    /// <summary>Adam's step into the states each step (a host loop, no device work), so a save never misses it.</summary>
    void SyncStateCheap()
    {
        if (_adam) foreach (var s in _states) ((Adam.State)s).step = _step;
    }

    /// <summary>
    /// The same update with every coefficient scaled by <paramref name="ok"/> (1 or 0) on the device: a skipped step
    /// changes nothing (gradients are masked first, since NaN·0 is NaN). Adam's bias corrections come from a device step
    /// count, so nothing is read back.
    /// </summary>
    void GuardedStep(Tensor? ok, double lr)
    {
        var okF = ok is null ? ones([], ScalarType.Float64, Device) : ok.to_type(ScalarType.Float64);
        var g = ok is null ? Grads : Grads.masked_fill(ok.logical_not(), Scalars.Zero);
        using var minusLr = Scalars.Of(-lr);
        if (_adam)
        {
            if (_deviceStep is null)
            {
                using var step = Scalars.Of(_step);
                _deviceStep = full([], step, ScalarType.Float64, Device).DetachFromDisposeScope();
            }
            _deviceStep.add_(okF, Scalars.One);
            // 1 − β^t as 1 − exp(t·ln β); clamped so that t = 0 (nothing applied yet, and this one skipped) is not 0/0.
            var bias1 = _deviceStep.mul(_sLogBeta1).exp_().neg_().add_(Scalars.One, Scalars.One).clamp_min_(_sTiny);
            var bias2 = _deviceStep.mul(_sLogBeta2).exp_().neg_().add_(Scalars.One, Scalars.One).clamp_min_(_sTiny);
            _first!.mul_(okF.mul(_sBeta1MinusOne).add_(Scalars.One, Scalars.One)).add_(g, alpha: _sOneMinusBeta1);
            _second!.mul_(okF.mul(_sBeta2MinusOne).add_(Scalars.One, Scalars.One)).addcmul_(g, g, value: _sOneMinusBeta2);
            var denom = _second.sqrt().div_(bias2.sqrt()).add_(_sEps, Scalars.One);
            Values.addcdiv_(_first.mul(okF.mul(minusLr).div_(bias1)), denom, value: Scalars.One);
        }
        else if (_first is null)
        {
            Values.add_(g, alpha: minusLr);
        }
        else
        {
            if (_momentumStarted) _first.mul_(okF.mul(_sMomentumMinusOne).add_(Scalars.One, Scalars.One)).add_(g, Scalars.One);
            else
            {
                _first.copy_(g);   // a skipped first step leaves zeros: the next one then starts the buffer as g
                _momentumStarted = true;
                SyncState();
            }
            Values.add_(_first.mul(okF), alpha: minusLr);
        }
    }

    /// <summary>
    /// The optimizer's state as its save_state_dict writes it, from one device-to-host copy of each flat moment
    /// instead of one blocking copy per parameter tensor.
    /// </summary>
    public void SaveOptimizerState(BinaryWriter writer)
    {
        SyncState();
        if (Device.type == DeviceType.CPU || _first is null || (!_adam && !_momentumStarted))
        {
            _optimizer.save_state_dict(writer);
            return;
        }
        using var scope = NewDisposeScope();
        var hostFirst = _first.cpu();
        var hostSecond = _second?.cpu();
        var saved = new (Tensor? First, Tensor? Second)[_states.Count];
        try
        {
            for (var i = 0; i < _states.Count; i++)
            {
                if (_states[i] is Adam.State a)
                {
                    saved[i] = (a.exp_avg, a.exp_avg_sq);
                    (a.exp_avg, a.exp_avg_sq) = (HostView(hostFirst, i), HostView(hostSecond!, i));
                }
                else if (_states[i] is SGD.State s)
                {
                    saved[i] = (s.momentum_buffer, null);
                    s.momentum_buffer = HostView(hostFirst, i);
                }
            }
            _optimizer.save_state_dict(writer);
        }
        finally
        {
            for (var i = 0; i < _states.Count; i++)
            {
                if (_states[i] is Adam.State a) (a.exp_avg, a.exp_avg_sq) = (saved[i].First!, saved[i].Second!);
                else if (_states[i] is SGD.State s) s.momentum_buffer = saved[i].First;
            }
        }
    }

    Tensor HostView(Tensor hostFlat, int i) => hostFlat.narrow(0, _start[i], _params[i].numel()).view(_params[i].shape);

    public void Dispose()
    {
        Values.Dispose();
        Grads.Dispose();
        _first?.Dispose();
        _second?.Dispose();
        _deviceStep?.Dispose();
        foreach (var c in new[] { _sBeta1, _sBeta2, _sOneMinusBeta1, _sOneMinusBeta2, _sBeta1MinusOne, _sBeta2MinusOne, _sLogBeta1, _sLogBeta2,
                     _sMomentum, _sMomentumMinusOne, _sEps, _sTiny })
            c.Dispose();
    }
}
