using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using GanCluster.Training.Spec;
using GanCluster.Training.Core;
using static TorchSharp.torch;

namespace GanCluster.Training.Output;

/// <summary>A checkpoint's files, serialized in memory and not yet written.</summary>
public sealed record CheckpointSnapshot(long Iteration, IReadOnlyDictionary<string, byte[]> Files);

/// <summary>What a checkpoint records besides the tensors: enough to resume and to sample.</summary>
public sealed record CheckpointState
{
    /// <summary>Completed iterations.</summary>
    public long Iteration { get; init; }
    public RunSpec Spec { get; init; } = new();
    /// <summary>The data cursor: epoch and offset within this replica's shard.</summary>
    public long DataEpoch { get; init; }
    public int DataOffset { get; init; }
    /// <summary>The noise generator's state (base64 of torch.Generator.get_state()).</summary>
    public string NoiseState { get; init; } = "";
    public DateTimeOffset SavedAt { get; init; }
}

/// <summary>
/// Checkpoints under &lt;output&gt;/checkpoints/iter-NNNNNNNN/: G.bin, D.bin (TorchSharp state dicts, BatchNorm
/// running statistics included), optD.bin, optG.bin, state.json and manifest.json (SHA-256 of every file).
/// Written to a temporary folder, fsynced, then renamed: a crash never leaves a half checkpoint under the final name.
/// </summary>
public static class CheckpointStore
{
    public const string Prefix = "iter-";
    /// <summary>The files every checkpoint holds (besides manifest.json, and a cluster's coordinator.json).</summary>
    public static readonly IReadOnlyList<string> Files = ["G.bin", "D.bin", "optD.bin", "optG.bin", "state.json"];

    public static string Folder(string output) => Path.Combine(output, "checkpoints");

    /// <summary>The folder a checkpoint of <paramref name="iteration"/> is published as.</summary>
    public static string PathOf(string output, long iteration) =>
        Path.Combine(Folder(output), Prefix + iteration.ToString("D8", CultureInfo.InvariantCulture));

    /// <summary>Snapshots and writes a checkpoint now (see <see cref="CheckpointWriter"/> for the background version).</summary>
    public static string Save(string output, GanReplica replica, CheckpointState state, int keep) => Write(output, Snapshot(replica, state), keep);

    /// <summary>
    /// Everything a checkpoint holds, serialized to memory: the only part training has to wait for. Weights and optimizer
    /// states are copied out of the (device) tensors here, so training may change them as soon as this returns.
    /// </summary>
    /// <param name="extra">More files for the checkpoint (a cluster adds the coordinator's coordinator.json); covered by the manifest.</param>
    public static CheckpointSnapshot Snapshot(GanReplica replica, CheckpointState state, IReadOnlyDictionary<string, byte[]>? extra = null)
    {
        static byte[] Serialize(Action<BinaryWriter> write)
        {
            using var ms = new MemoryStream();
            using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) write(w);
            return ms.ToArray();
        }
        var files = new Dictionary<string, byte[]>
        {
            // A few bulk device-to-host copies per network (flat parameters, moments, buffers), not one per tensor.
            ["G.bin"] = Serialize(replica.SaveG),
            ["D.bin"] = Serialize(replica.SaveD),
            ["optD.bin"] = Serialize(replica.SaveOptD),
            ["optG.bin"] = Serialize(replica.SaveOptG),
            ["state.json"] = JsonSerializer.SerializeToUtf8Bytes(state, RunSpec.Json),
        };
        foreach (var (name, bytes) in extra ?? new Dictionary<string, byte[]>()) files[name] = bytes;
        return new CheckpointSnapshot(state.Iteration, files);
    }

    /// <summary>manifest.json of a snapshot: the SHA-256 of every file.</summary>
    public static byte[] Manifest(CheckpointSnapshot snapshot) =>
        JsonSerializer.SerializeToUtf8Bytes(snapshot.Files.ToDictionary(f => f.Key, f => Convert.ToHexString(SHA256.HashData(f.Value)).ToLowerInvariant()), RunSpec.Json);

    /// <summary>Writes a snapshot: temporary folder, fsync, manifest of SHA-256s, rename, then keeps the newest <paramref name="keep"/>.</summary>
    public static string Write(string output, CheckpointSnapshot snapshot, int keep)
    {
        var root = Folder(output);
        Directory.CreateDirectory(root);
        var final = PathOf(output, snapshot.Iteration);
        var tmp = Path.Combine(root, $".tmp-{Path.GetFileName(final)}-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);

        foreach (var (name, bytes) in snapshot.Files.Append(new("manifest.json", Manifest(snapshot))))
        {
            using var fs = new FileStream(Path.Combine(tmp, name), FileMode.CreateNew, FileAccess.Write);
            fs.Write(bytes);
            fs.Flush(flushToDisk: true);
        }

        if (Directory.Exists(final)) Directory.Delete(final, true);
        Directory.Move(tmp, final);
        Prune(output, keep);
        return final;
    }

    /// <summary>Checkpoint folders, newest first.</summary>
    public static IReadOnlyList<string> List(string output)
    {
        var root = Folder(output);
        if (!Directory.Exists(root)) return [];
        return Directory.GetDirectories(root, Prefix + "*").OrderByDescending(Path.GetFileName, StringComparer.Ordinal).ToList();
    }

    /// <summary>The newest checkpoint whose manifest checks out; <paramref name="skipped"/> names the ones that did not.</summary>
    public static string? LatestValid(string output, out List<string> skipped)
    {
        skipped = [];
        foreach (var dir in List(output))
        {
            var problem = Verify(dir);
            if (problem is null) return dir;
            skipped.Add($"{dir}: {problem}");
        }
        return null;
    }

    /// <summary>Null when every file matches the manifest, else what is wrong.</summary>
    public static string? Verify(string dir)
    {
        var manifestPath = Path.Combine(dir, "manifest.json");
        if (!File.Exists(manifestPath)) return "no manifest.json";
        Dictionary<string, string>? manifest;
        try { manifest = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(manifestPath)); }
        catch (JsonException e) { return $"manifest.json is not valid JSON ({e.Message})"; }
        if (manifest is null) return "manifest.json is empty";
        foreach (var f in Files.Where(f => !manifest.ContainsKey(f))) return $"{f} is not in the manifest";
        foreach (var (f, expected) in manifest)
        {
            var path = Path.Combine(dir, f);
            if (f.Contains('/') || f.Contains('\\') || f.Contains("..")) return $"the manifest names {f}, outside the checkpoint";
            if (!File.Exists(path)) return $"{f} is missing";
            if (!string.Equals(Sha256(path), expected, StringComparison.OrdinalIgnoreCase)) return $"{f} fails its checksum";
        }
        return null;
    }

    public static CheckpointState ReadState(string dir) =>
        JsonSerializer.Deserialize<CheckpointState>(File.ReadAllText(Path.Combine(dir, "state.json")), RunSpec.Json)
        ?? throw new InvalidDataException($"{dir}/state.json is empty");

    /// <summary>Loads weights, optimizer states and the noise generator state into <paramref name="replica"/>.</summary>
    public static void Restore(string dir, GanReplica replica, CheckpointState state, bool optimizers = true)
    {
        replica.G.load(Path.Combine(dir, "G.bin"));
        replica.D.load(Path.Combine(dir, "D.bin"));
        replica.WeightsLoaded();
        if (optimizers)
        {
            replica.OptD.load_state_dict(Path.Combine(dir, "optD.bin"));
            replica.OptG.load_state_dict(Path.Combine(dir, "optG.bin"));
            replica.OptimizerStateLoaded();
        }
        if (state.NoiseState.Length > 0) SetNoiseState(replica.NoiseGenerator, state.NoiseState, dir);
    }

    /// <summary>
    /// Restores a generator state saved by <see cref="NoiseStateOf"/>. The length is checked first: libtorch aborts the
    /// whole process, with no exception, when set_state is given a state of another length.
    /// </summary>
    public static void SetNoiseState(Generator generator, string base64, string source)
    {
        byte[] bytes;
        try { bytes = Convert.FromBase64String(base64); }
        catch (FormatException) { throw new InvalidDataException($"{source}: state.json's noiseState is not base64"); }
        using (var current = generator.get_state())
        {
            if (current.numel() != bytes.Length)
                throw new InvalidDataException($"{source}: state.json's noiseState holds {bytes.Length} bytes, but this libtorch's CPU generator state is {current.numel()} bytes");
        }
        using var s = tensor(bytes);
        generator.set_state(s);
    }

    public static string NoiseStateOf(GanReplica replica)
    {
        using var s = replica.NoiseGenerator.get_state();
        return Convert.ToBase64String(s.data<byte>().ToArray());
    }

    /// <summary>Deletes all but the newest <paramref name="keep"/> checkpoints, sparing the one <c>best.json</c> names (checkpoint.keepBest).</summary>
    public static void Prune(string output, int keep)
    {
        var best = BestCheckpoint.Read(output) is { } b ? PathOf(output, b.Iteration) : null;
        foreach (var old in List(output).Skip(keep).Where(d => d != best)) Directory.Delete(old, true);
    }

    static string Sha256(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(fs)).ToLowerInvariant();
    }
}
