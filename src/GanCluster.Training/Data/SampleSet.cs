using TorchSharp;
using static TorchSharp.torch;

namespace GanCluster.Training.Data;

/// <summary>
/// A dataset held in memory as one float32 tensor [N, ...sample shape] already scaled to [-1, 1]:
/// [N, C, H, W] for images, [N, 2] for 2-D points.
/// </summary>
public sealed class SampleSet : IDisposable
{
    public SampleSet(Tensor data, string source)
    {
        Data = data;
        Source = source;
    }

    public Tensor Data { get; }
    public string Source { get; }
    public int Count => (int)Data.shape[0];
    public long[] SampleShape => Data.shape[1..];

    /// <summary>Gathers the given rows into a new [B, ...] tensor on <paramref name="device"/>.</summary>
    public Tensor Batch(ReadOnlySpan<int> indices, Device device)
    {
        var idx = new long[indices.Length];
        for (var i = 0; i < idx.Length; i++) idx[i] = indices[i];
        using var ix = tensor(idx, device: Data.device);
        return Data.index_select(0, ix).to(device);
    }

    /// <summary>Moves the whole set to <paramref name="device"/> (a small dataset on the GPU saves a host copy per batch).</summary>
    public SampleSet To(Device device) => Data.device == device ? this : new SampleSet(Data.to(device), Source);

    public void Dispose() => Data.Dispose();
}

/// <summary>Bad input data: the message names the file and the problem.</summary>
public sealed class DatasetException(string path, string problem) : Exception($"{path}: {problem}")
{
    public string Path { get; } = path;
    public string Problem { get; } = problem;
}
