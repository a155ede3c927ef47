using System.Globalization;
using GanCluster.Training.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Data;

/// <summary>Where a run's samples live while it trains.</summary>
public enum DataPlacement { Cpu, Device, PinnedHost }

/// <summary>
/// A run's data as its training device reads it. On a GPU the whole set goes to the device when it fits (one
/// index_select per batch, with each epoch's indices uploaded once), otherwise it stays in host memory and each batch
/// is gathered there and copied through pinned memory without blocking. On the CPU it is the loaded set as it is.
/// </summary>
public sealed class DeviceData : IDisposable
{
    /// <summary>Used when the device's free memory cannot be asked (no CUDA runtime found): data above this stays on the host.</summary>
    public const long FallbackDeviceBudget = 2L << 30;

    readonly SampleSet _set;
    readonly bool _ownsSet;
    readonly Device _device;
    // Epoch index arrays on the device, keyed by the cursor's array itself (a re-formed shard has new arrays for the
    // same epoch numbers); at most the current and the next one.
    readonly List<(int[] Host, Tensor Device)> _epochIndices = [];

    DeviceData(SampleSet set, bool ownsSet, Device device, DataPlacement placement, string description)
    {
        (_set, _ownsSet, _device, Placement, Description) = (set, ownsSet, device, placement, description);
    }

    public DataPlacement Placement { get; }
    /// <summary>One line for the log: where the data is and why.</summary>
    public string Description { get; }
    public int Count => _set.Count;
    public long[] SampleShape => _set.SampleShape;
    public string Source => _set.Source;

    /// <summary>Bytes of the whole set as float32.</summary>
    public static long SizeBytes(SampleSet set) => set.Data.numel() * 4;

    /// <summary>
    /// Places <paramref name="loaded"/> for <paramref name="device"/> by <c>dataset.placement</c> (auto, device, host).
    /// Takes ownership of <paramref name="loaded"/>. <paramref name="freeBytes"/>: the device's free memory (null: ask it).
    /// </summary>
    public static DeviceData Place(SampleSet loaded, Device device, string placement, long? freeBytes = null)
    {
        var bytes = SizeBytes(loaded);
        var size = Mb(bytes);
        if (device.type != DeviceType.CUDA)
            // On the CPU "device" only changes how batches are sliced (each epoch's indices made once), as on a GPU.
            return new DeviceData(loaded, true, device, placement == "device" ? DataPlacement.Device : DataPlacement.Cpu, $"{size} in host memory ({device})");
        if (placement == "host")
            return Host(loaded, device, $"{size} kept in host memory (dataset.placement host); batches copied through pinned memory");

        var free = freeBytes ?? TorchRuntime.CudaMemoryInfo(device.index < 0 ? 0 : device.index)?.Free;
        var budget = free is { } f ? f / 2 : FallbackDeviceBudget;
        var budgetText = free is { } ff ? $"half of {device}'s {Mb(ff)} free" : $"{Mb(FallbackDeviceBudget)} (free memory of {device} unknown)";
        if (bytes > budget)
        {
            if (placement == "device")
                throw new DatasetException(loaded.Source, $"dataset.placement is device, but the data needs {size} on {device} and the limit is {budgetText}; use placement auto or host");
            return Host(loaded, device, $"{size} kept in host memory: more than {budgetText}; batches copied through pinned memory");
        }
        Tensor onDevice;
        try
        {
            onDevice = loaded.Data.to(device);
        }
        catch (Exception e) when (e is System.Runtime.InteropServices.ExternalException && e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase))
        {
            if (placement == "device")
                throw new DatasetException(loaded.Source, $"dataset.placement is device, but {size} did not fit on {device}: {FirstLine(e.Message)}");
            return Host(loaded, device, $"{size} kept in host memory: {device} ran out of memory taking it");
        }
        var set = new SampleSet(onDevice, loaded.Source);
        loaded.Dispose();
        return new DeviceData(set, true, device, DataPlacement.Device, $"{size} on {device} (limit: {budgetText})");
    }

    static DeviceData Host(SampleSet loaded, Device device, string why) => new(loaded, true, device, DataPlacement.PinnedHost, why);

    static string Mb(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:F1} MB");

    static string FirstLine(string s) => s.Split('\n')[0];

    /// <summary>The next batch [B, ...] of <paramref name="cursor"/>'s stream, on the training device.</summary>
    public Tensor Batch(BatchCursor cursor, int batchSize)
    {
        var segments = cursor.NextSegments(batchSize);
        switch (Placement)
        {
            case DataPlacement.Device:
            {
                using var scope = NewDisposeScope();
                var parts = segments.Select(s => EpochIndices(s).narrow(0, s.Offset, s.Count)).ToList();
                var idx = parts.Count == 1 ? parts[0] : cat(parts, 0);
                return _set.Data.index_select(0, idx).MoveToOuterDisposeScope();
            }
            case DataPlacement.PinnedHost:
            {
                using var scope = NewDisposeScope();
                using var ix = tensor(Flatten(segments));
                using var pinned = _set.Data.index_select(0, ix).pin_memory();
                return pinned.to(_device, non_blocking: true).MoveToOuterDisposeScope();
            }
            default:
            {
                using var ix = tensor(Flatten(segments));
                return _set.Data.index_select(0, ix);
            }
        }
    }

    static long[] Flatten(IReadOnlyList<BatchSegment> segments)
    {
        var idx = new long[segments.Sum(s => s.Count)];
        var at = 0;
        foreach (var s in segments)
            for (var i = 0; i < s.Count; i++) idx[at++] = s.EpochIndices[s.Offset + i];
        return idx;
    }

    /// <summary>An epoch's whole index array on the device, uploaded the first time it is needed.</summary>
    Tensor EpochIndices(BatchSegment s)
    {
        foreach (var (h, d) in _epochIndices)
            if (ReferenceEquals(h, s.EpochIndices)) return d;
        if (_epochIndices.Count == 2)
        {
            _epochIndices[0].Device.Dispose();
            _epochIndices.RemoveAt(0);
        }
        var host = new long[s.EpochIndices.Length];
        for (var i = 0; i < host.Length; i++) host[i] = s.EpochIndices[i];
        using var cpu = tensor(host);
        var onDevice = cpu.to(_device).DetachFromDisposeScope();
        IndexUploads++;
        _epochIndices.Add((s.EpochIndices, onDevice));
        return onDevice;
    }

    /// <summary>Epoch index arrays uploaded so far (a test checks it stays at one per epoch).</summary>
    public int IndexUploads { get; private set; }

    public void Dispose()
    {
        foreach (var (_, d) in _epochIndices) d.Dispose();
        _epochIndices.Clear();
        if (_ownsSet) _set.Dispose();
    }
}
