using GanCluster.Protocol;
using GanCluster.Tests.Shared;
using GanCluster.Training.Output;

namespace GanCluster.Training.Tests;

/// <summary>What <c>gancluster runs</c> reads from run folders: state, progress and the best score, by header names.</summary>
public class RunListingTests
{
    static string Run(TempFolder dir, string relative, int iterations, string? metrics = null, params long[] checkpoints)
    {
        var output = Path.Combine(dir.Path, relative);
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "spec.json"), (TinySpecs.Ring8(output, iterations) with { Name = Path.GetFileName(relative) }).ToJson());
        if (metrics is not null) File.WriteAllText(Path.Combine(output, "metrics.csv"), metrics);
        foreach (var c in checkpoints) Directory.CreateDirectory(CheckpointStore.PathOf(output, c));
        return output;
    }

    [Fact]
    public void Run_folders_are_summarised_with_their_state_progress_and_best_score()
    {
        using var dir = new TempFolder();
        const string header = "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped,fid,class_kl,confident,modes,high_quality";
        var images = Run(dir, "images", 300, $"{header}\n100,1,1,0.5,0.5,100,1,0,,,,,\n100,,,,,,1.5,,40.5,0.2,0.7,,\n200,,,,,,3,,12.25,0.1,0.8,,\n300,,,,,,4.5,,19,0.1,0.8,,\n", 300);
        var points = Run(dir, Path.Combine("nested", "points"), 1000, $"{header}\n100,,,,,,1,,,,,6,0.5\n200,,,,,,2,,,,,8,0.4\n300,,,,,,3,,,,,8,0.75\n", 200);
        var old = Run(dir, "old", 50, "iteration,loss_d,loss_g,d_x,d_g_z,img_per_s,elapsed_s,skipped\n10,1,1,0.5,0.5,100,1,0\n");
        var fresh = Run(dir, "fresh", 50);
        Directory.CreateDirectory(Path.Combine(dir.Path, "not-a-run"));
        Directory.CreateDirectory(Path.Combine(dir.Path, "broken"));
        File.WriteAllText(Path.Combine(dir.Path, "broken", "spec.json"), "{ not json");

        var (runs, omitted) = RunListing.Scan(dir.Path);
        Assert.Equal(0, omitted);
        var byName = runs.ToDictionary(r => r.Name);
        Assert.Equal(["fresh", "images", "old", "points"], byName.Keys.Order());

        Assert.Equal((RunFolderState.Completed, 300L, 300L, "FD 12.25 at 200"), (byName["images"].State, byName["images"].Iteration, byName["images"].Total, byName["images"].Best));
        // More modes first, then the higher share: 8 modes at 0.75 beats 8 at 0.4 and 6 at 0.5.
        Assert.Equal((RunFolderState.Stopped, 300L, "modes 8, high-quality 75.0 % at 300"), (byName["points"].State, byName["points"].Iteration, byName["points"].Best));
        Assert.Equal(points, byName["points"].Output);
        // An older metrics.csv (no quality columns): progress from its rows, no score.
        Assert.Equal((RunFolderState.Stopped, 10L, (string?)null), (byName["old"].State, byName["old"].Iteration, byName["old"].Best));
        Assert.Equal(RunFolderState.NotStarted, byName["fresh"].State);

        // The cluster's active run, and a folder whose lock is held, are running.
        Assert.Equal(RunFolderState.Running, RunListing.Scan(dir.Path, active: fresh).Runs.Single(r => r.Name == "fresh").State);
        using (RunLock.TryAcquire(old))
        {
            Assert.Null(RunLock.TryAcquire(old));   // one trainer per folder
            Assert.Equal($"{Environment.ProcessId}@{Environment.MachineName}", RunLock.Holder(old));
            Assert.Equal(RunFolderState.Running, RunListing.Summarise(old)!.State);
        }
        Assert.Equal(RunFolderState.Stopped, RunListing.Summarise(old)!.State);

        // Bounded: the most recently updated first, the rest counted.
        Directory.SetLastWriteTimeUtc(CheckpointStore.Folder(images), DateTime.UtcNow.AddDays(1));
        var (top, rest) = RunListing.Scan(dir.Path, max: 1);
        Assert.Equal(("images", 3), (top.Single().Name, rest));
    }
}
