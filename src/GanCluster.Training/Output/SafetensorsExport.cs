using TorchSharp.Modules;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace GanCluster.Training.Output;

/// <summary>
/// G and D as safetensors with PyTorch nn.Sequential key names: "&lt;layer index&gt;.&lt;tensor&gt;", e.g. "0.weight",
/// "1.running_mean". Our layers sit in the same positions as pytorch/examples dcgan (and pytorch_dcgan_ref.py), so the
/// files load with <c>load_state_dict(safetensors.torch.load_file(path))</c> into those models.
/// </summary>
public static class SafetensorsExport
{
    public static void Save(Sequential net, string path)
    {
        var dict = new Dictionary<string, Tensor>();
        var position = 0;
        foreach (var (_, child) in net.named_children())
        {
            foreach (var (key, tensor) in child.state_dict()) dict[$"{position}.{key}"] = tensor.detach().cpu().contiguous();
            position++;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        Safetensors.SaveStateDict(path, dict);
    }

    /// <summary>Loads a file written by <see cref="Save"/> (or by PyTorch from the same architecture) into <paramref name="net"/>.</summary>
    public static void Load(Sequential net, string path)
    {
        var loaded = Safetensors.LoadStateDict(path);
        var names = net.named_children().Select(c => c.name).ToList();
        var dict = new Dictionary<string, Tensor>();
        foreach (var (key, tensor) in loaded)
        {
            var dot = key.IndexOf('.');
            if (dot <= 0 || !int.TryParse(key[..dot], out var position) || position >= names.Count)
                throw new InvalidDataException($"{path}: key {key} does not name a layer of this model ({names.Count} layers)");
            dict[$"{names[position]}.{key[(dot + 1)..]}"] = tensor;
        }
        // Check names and shapes first: load_state_dict would fail on the first mismatch with a native error.
        var expected = net.state_dict();
        var missing = expected.Keys.Where(k => !dict.ContainsKey(k)).ToList();
        var unexpected = dict.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        var wrongShape = dict.Where(kv => expected.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key} is [{string.Join(", ", kv.Value.shape)}], expected [{string.Join(", ", expected[kv.Key].shape)}]").ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || wrongShape.Count > 0)
            throw new InvalidDataException($"{path}: does not match this model (missing: {string.Join(", ", missing)}; unexpected: {string.Join(", ", unexpected)}; {string.Join("; ", wrongShape)})");
        net.load_state_dict(dict);
    }

    /// <summary>Key → shape, for documentation and checks.</summary>
    public static IReadOnlyList<(string Key, long[] Shape)> Describe(string path) =>
        Safetensors.LoadStateDict(path).Select(kv => (kv.Key, kv.Value.shape)).OrderBy(k => int.Parse(k.Key[..k.Key.IndexOf('.')])).ThenBy(k => k.Key).ToList();
}
