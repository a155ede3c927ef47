using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Core;

/// <summary>What the NaN guard counted, read from the device at a log line or before a save.</summary>
/// <param name="Stopped">This many non-finite updates came in a row: every later update was skipped too.</param>
/// <param name="StopIteration">The 0-based iteration in which the guard stopped (the iterations completed before it).</param>
public readonly record struct GuardCounts(long Skipped, long Consecutive, bool Stopped, long StopIteration);

/// <summary>What to do with one update: skip it, or apply it with <see cref="Mask"/> (null: unconditionally).</summary>
public readonly record struct GuardDecision(bool Skip, Tensor? Mask);

/// <summary>
/// The NaN guard of every replica: an update is applied only when its (averaged) gradients are all finite. At a
/// world of one on a GPU it is kept on the device so that it costs no host sync per update: an update
/// whose gradients are not all finite is skipped there (see <see cref="FlatNetwork.Step"/>), and after <c>maxConsecutive</c> in
/// a row every later update is skipped as well, so the replica stays as it was until the trainer reads the counts and
/// stops. On the CPU there is no queue to drain, so reading the verdict costs nothing and saves the ~30 small masking
/// ops per update that a small model feels: the same decisions are taken on the host.
/// </summary>
public sealed class NonFiniteGuard : IDisposable
{
    readonly int _maxConsecutive;
    readonly Scalar _maxConsecutiveScalar;   // held: see Scalars
    readonly bool _onHost;
    readonly Tensor _skipped, _consecutive, _stopped, _stopAt;   // float64 [] each, on the device
    long _hostSkipped, _hostConsecutive, _hostStopAt = -1;
    bool _hostStopped;

    /// <param name="onDevice">Decide on the device (default: on a GPU only); tests force it on the CPU.</param>
    /// <param name="consecutive">Non-finite updates in a row before this guard (a run that goes on in a new formation).</param>
    public NonFiniteGuard(int maxConsecutive, Device device, bool? onDevice = null, long consecutive = 0)
    {
        _maxConsecutive = maxConsecutive;
        _maxConsecutiveScalar = Scalars.Of(maxConsecutive);
        _onHost = !(onDevice ?? device.type != DeviceType.CPU);
        _skipped = zeros([], ScalarType.Float64, device).DetachFromDisposeScope();
        using (var start = Scalars.Of(consecutive))
            _consecutive = full([], start, ScalarType.Float64, device).DetachFromDisposeScope();
        _stopped = zeros([], ScalarType.Bool, device).DetachFromDisposeScope();
        using (var none = Scalars.Of(-1))
            _stopAt = full([], none, ScalarType.Float64, device).DetachFromDisposeScope();
        _hostConsecutive = consecutive;
    }

    /// <summary>Whether and how to apply the update whose gradients are all finite when <paramref name="finite"/> (bool [], on the device) is true; on a GPU nothing is read.</summary>
    public GuardDecision Decide(Tensor finite, long iteration) =>
        _onHost ? DecideHost(finite.item<bool>(), iteration) : new GuardDecision(false, Observe(finite, iteration));

    /// <summary>The decision for an update whose finiteness is already known on the host (a cluster's averaged gradients).</summary>
    public GuardDecision DecideHost(bool finite, long iteration)
    {
        if (!_onHost) return new GuardDecision(false, Observe(tensor(finite, device: _stopped.device), iteration));
        if (_hostStopped) return new GuardDecision(true, null);
        if (finite)
        {
            _hostConsecutive = 0;
            return new GuardDecision(false, null);
        }
        _hostSkipped++;
        if (++_hostConsecutive >= _maxConsecutive)
        {
            _hostStopped = true;
            _hostStopAt = iteration;
        }
        return new GuardDecision(true, null);
    }

    /// <summary>Whether to apply the update whose finiteness is <paramref name="finite"/> (bool [], on the device; nothing is read).</summary>
    public Tensor Observe(Tensor finite, long iteration)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var running = _stopped.logical_not();
        var ok = finite.logical_and(running);
        var bad = running.to_type(ScalarType.Float64).sub_(ok.to_type(ScalarType.Float64));   // 1: counted as a skip
        _skipped.add_(bad, Scalars.One);
        _consecutive.add_(bad, Scalars.One).mul_(ok.logical_not());
        var stopsNow = _consecutive.ge(_maxConsecutiveScalar).logical_and_(running);
        using var at = Scalars.Of(iteration);
        _stopAt.masked_fill_(stopsNow, at);
        _stopped.logical_or_(stopsNow);
        return ok.DetachFromDisposeScope();
    }

    /// <summary>The counts (one device sync).</summary>
    public GuardCounts Read()
    {
        if (_onHost) return new GuardCounts(_hostSkipped, _hostConsecutive, _hostStopped, _hostStopAt);
        using var scope = NewDisposeScope();
        var v = stack([_skipped, _consecutive, _stopped.to_type(ScalarType.Float64), _stopAt]).cpu().data<double>().ToArray();
        return new GuardCounts((long)v[0], (long)v[1], v[2] != 0, (long)v[3]);
    }

    public void Dispose()
    {
        _skipped.Dispose();
        _consecutive.Dispose();
        _stopped.Dispose();
        _stopAt.Dispose();
        _maxConsecutiveScalar.Dispose();
    }
}
