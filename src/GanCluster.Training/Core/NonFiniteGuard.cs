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
/// The local run's NaN guard. On a GPU it is kept on the device so that it costs no host sync per update: an update
/// whose loss is not finite is skipped there (see <see cref="FlatNetwork.Step"/>), and after <c>maxConsecutive</c> in
/// a row every later update is skipped as well, so the replica stays as it was until the trainer reads the counts and
/// stops. On the CPU there is no queue to drain, so reading the loss costs nothing and saves the ~30 small masking
/// ops per update that a small model feels: the same decisions are taken on the host.
/// </summary>
public sealed class NonFiniteGuard : IDisposable
{
    readonly int _maxConsecutive;
    readonly bool _onHost;
    readonly Tensor _skipped, _consecutive, _stopped, _stopAt;   // float64 [] each, on the device
    long _hostSkipped, _hostConsecutive, _hostStopAt = -1;
    bool _hostStopped;

    /// <param name="onDevice">Decide on the device (default: on a GPU only); tests force it on the CPU.</param>
    public NonFiniteGuard(int maxConsecutive, Device device, bool? onDevice = null)
    {
        _maxConsecutive = maxConsecutive;
        _onHost = !(onDevice ?? device.type != DeviceType.CPU);
        _skipped = zeros([], ScalarType.Float64, device).DetachFromDisposeScope();
        _consecutive = zeros([], ScalarType.Float64, device).DetachFromDisposeScope();
        _stopped = zeros([], ScalarType.Bool, device).DetachFromDisposeScope();
        _stopAt = full([], -1.0, ScalarType.Float64, device).DetachFromDisposeScope();
    }

    /// <summary>Whether and how to apply the update whose loss is <paramref name="loss"/> (on a GPU nothing is read).</summary>
    public GuardDecision Decide(Tensor loss, long iteration)
    {
        if (!_onHost) return new GuardDecision(false, Observe(loss, iteration));
        if (_hostStopped) return new GuardDecision(true, null);
        if (loss.isfinite().item<bool>())
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

    /// <summary>Whether to apply the update whose loss is <paramref name="loss"/> (bool [], on the device; nothing is read).</summary>
    public Tensor Observe(Tensor loss, long iteration)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var running = _stopped.logical_not();
        var ok = loss.detach().isfinite().logical_and_(running);
        var bad = running.to_type(ScalarType.Float64).sub_(ok.to_type(ScalarType.Float64));   // 1: counted as a skip
        _skipped.add_(bad);
        _consecutive.add_(bad).mul_(ok.logical_not());
        var stopsNow = _consecutive.ge(_maxConsecutive).logical_and_(running);
        _stopAt.masked_fill_(stopsNow, (double)iteration);
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
    }
}
