using GanCluster.Training.Native;

namespace GanCluster.Training.Tests;

public class NativeLoadingTests
{
    static string BridgePath()
    {
        var candidates = new[] { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") };
        return candidates.Select(d => Path.Combine(d, "libLibTorchSharp.so")).First(File.Exists);
    }

    [Fact]
    public void ElfHash_matches_the_hashes_stored_in_the_library()
    {
        // Every vna_hash the linker wrote must equal our hash of the version name.
        var requirements = ElfVersionPatch.ListRequirements(File.ReadAllBytes(BridgePath()));
        Assert.NotEmpty(requirements);
        foreach (var (_, version, hash) in requirements)
            Assert.Equal(hash, ElfVersionPatch.ElfHash(version));
        Assert.Equal(0x077905a6u, ElfVersionPatch.ElfHash("printf"));
    }

    [Fact]
    public void Rewrite_replaces_only_the_GLIBCXX_3_4_32_requirement()
    {
        var original = File.ReadAllBytes(BridgePath());
        var before = ElfVersionPatch.ListRequirements(original);
        Assert.Contains(before, r => r.Version == "GLIBCXX_3.4.32");

        var patched = ElfVersionPatch.Rewrite(original, "GLIBCXX_3.4.32", "GLIBCXX_3.4.30")!;
        var after = ElfVersionPatch.ListRequirements(patched);
        Assert.Equal(before.Count, after.Count);
        Assert.DoesNotContain(after, r => r.Version == "GLIBCXX_3.4.32");
        for (var i = 0; i < before.Count; i++)
        {
            var expected = before[i].Version == "GLIBCXX_3.4.32" ? "GLIBCXX_3.4.30" : before[i].Version;
            Assert.Equal(expected, after[i].Version);
            Assert.Equal(ElfVersionPatch.ElfHash(expected), after[i].Hash);
        }
        // Exactly 8 bytes change: the entry's vna_hash and vna_name.
        Assert.Equal(original.Length, patched.Length);
        Assert.InRange(original.Zip(patched).Count(p => p.First != p.Second), 1, 8);
        Assert.Null(ElfVersionPatch.Rewrite(patched, "GLIBCXX_3.4.32", "GLIBCXX_3.4.30"));
    }

    [Fact]
    public void Rewrite_refuses_non_ELF_input()
    {
        Assert.Throws<InvalidDataException>(() => ElfVersionPatch.Rewrite(new byte[128], "A", "B"));
    }

    [Fact]
    public void Libtorch_loads_and_computes()
    {
        var env = TorchSetup.Ensure();
        Assert.True(File.Exists(Path.Combine(env.LibTorchDir, "libtorch.so")));
        using var t = TorchSharp.torch.arange(10).sum();
        Assert.Equal(45, t.item<long>());
    }

    [Fact]
    public void A_missing_TORCH_LIB_DIR_fails_with_what_was_tried_and_what_to_do()
    {
        var missing = Path.Combine(Path.GetTempPath(), "no-such-torch-" + Guid.NewGuid().ToString("N"));
        var run = CliProcess.Run(["info"], new() { [TorchRuntime.LibDirVariable] = missing });
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("Could not load libtorch", run.StdErr);
        Assert.Contains(missing, run.StdErr);
        Assert.Contains("What to do", run.StdErr);
        Assert.Contains("TORCH_LIB_DIR", run.StdErr);
    }

    [Fact]
    public void Info_reports_the_loaded_libtorch()
    {
        var run = CliProcess.Run(["info"]);
        Assert.True(run.ExitCode == 0, run.StdErr);
        Assert.Contains("libtorch:", run.StdOut);
        Assert.Contains("ones(2,2).sum() = 4", run.StdOut);
    }
}
