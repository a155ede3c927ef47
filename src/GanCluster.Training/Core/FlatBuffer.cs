using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>
/// One network's gradients (or weights) in one flat float32 host buffer, moved with bulk copies:
/// per-parameter device-to-device copies into a flat device tensor, then one device-to-host copy
/// (pinned memory on CUDA). The cluster all-reduces <see cref="Span"/> between gather and scatter.
/// </summary>
public sealed unsafe class FlatBuffer : IDisposable
{
    readonly Tensor[] _params;
    readonly FlatNetwork? _network;   // parameters and gradients already end to end on the device: one copy each way
    readonly long[] _offsets;
    readonly Tensor? _deviceFlat; // null on CPU: the host buffer is the flat buffer
    readonly IntPtr _ptr;

    /// <summary>A network whose parameters and gradients already lie end to end: gather and scatter are one copy each.</summary>
    public FlatBuffer(FlatNetwork network) : this([], network.Values.device, checked((int)network.Length)) => _network = network;

    public FlatBuffer(IEnumerable<Tensor> parameters, Device device) : this(parameters.ToArray(), device, -1)
    {
    }

    FlatBuffer(Tensor[] parameters, Device device, int length)
    {
        _params = parameters;
        _offsets = new long[_params.Length + 1];
        for (var i = 0; i < _params.Length; i++) _offsets[i + 1] = _offsets[i] + _params[i].numel();
        Length = length >= 0 ? length : checked((int)_offsets[^1]);

        var host = zeros(Length, ScalarType.Float32, CPU);
        Host = device.type == DeviceType.CUDA ? host.pin_memory() : host;
        if (!ReferenceEquals(Host, host)) host.Dispose();
        Host.DetachFromDisposeScope();
        using (var storage = Host.storage<float>()) _ptr = storage.data_ptr();
        if (device.type != DeviceType.CPU && length < 0)
            _deviceFlat = zeros(Length, ScalarType.Float32, device).DetachFromDisposeScope();
    }

    /// <summary>Number of floats.</summary>
    public int Length { get; }
    /// <summary>The host tensor [Length] (CPU, pinned on CUDA) that <see cref="Span"/> views.</summary>
    public Tensor Host { get; }
    /// <summary>The host buffer's memory; valid while this object lives.</summary>
    public Span<float> Span => new((void*)_ptr, Length);

    /// <summary>True when every value of the host buffer is finite (x − x is 0 only for finite x; NaN and ±inf give NaN).</summary>
    public bool AllFinite()
    {
        var span = (ReadOnlySpan<float>)Span;
        var vectors = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(span);
        var acc = System.Numerics.Vector<float>.Zero;
        foreach (var v in vectors) acc += v - v;
        var sum = System.Numerics.Vector.Sum(acc);
        for (var i = vectors.Length * System.Numerics.Vector<float>.Count; i < span.Length; i++) sum += span[i] - span[i];
        return sum == 0;
    }

    /// <summary>param.grad → flat host buffer (zeros for a parameter without a gradient).</summary>
    public void GatherGrads()
    {
        if (_network is not null) Host.copy_(_network.Grads);   // synchronous device-to-host copy
        else Gather(p => p.grad);
    }

    /// <summary>param values → flat host buffer.</summary>
    public void GatherValues()
    {
        if (_network is not null) Host.copy_(_network.Values);
        else Gather(p => p);
    }

    /// <summary>Flat host buffer → param.grad.</summary>
    public void ScatterGrads()
    {
        if (_network is not null)
        {
            _network.Grads.copy_(Host);
            return;
        }
        using var scope = NewDisposeScope();
        var src = ToDevice();
        using var _ = no_grad();
        for (var i = 0; i < _params.Length; i++)
        {
            var p = _params[i];
            var slice = src.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]).view(p.shape);
            var g = p.grad;
            if (g is null) p.grad = slice.clone();
            else g.copy_(slice);
        }
    }

    /// <summary>Flat host buffer → param values (used to broadcast identical initial weights).</summary>
    public void ScatterValues()
    {
        if (_network is not null)
        {
            using (no_grad()) _network.Values.copy_(Host);
            _network.ValuesChanged();
            return;
        }
        using var scope = NewDisposeScope();
        var src = ToDevice();
        using var _ = no_grad();
        for (var i = 0; i < _params.Length; i++)
            _params[i].copy_(src.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]).view(_params[i].shape));
    }

    void Gather(Func<Tensor, Tensor?> select)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var dst = _deviceFlat ?? Host;
        for (var i = 0; i < _params.Length; i++)
        {
            var slice = dst.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]);
            var t = select(_params[i]);
            if (t is null) slice.zero_();
            else slice.copy_(t.detach().reshape(-1));
        }
        if (_deviceFlat is not null) Host.copy_(_deviceFlat); // one D2H copy; synchronous, so Span is ready after it
    }

    Tensor ToDevice()
    {
        if (_deviceFlat is null) return Host;
        _deviceFlat.copy_(Host);
        return _deviceFlat;
    }

    public void Dispose()
    {
        _deviceFlat?.Dispose();
        Host.Dispose();
    }
}
