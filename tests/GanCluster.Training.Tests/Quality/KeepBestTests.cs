using GanCluster.Engine;
using GanCluster.Training.Output;
using GanCluster.Training.Spec;
using static TorchSharp.torch;

namespace GanCluster.Training.Tests.Quality;

/// <summary><c>checkpoint.keepBest</c>: the best checkpoint is recorded on disk and spared by pruning.</summary>
public sealed class KeepBestTests
{
    static CheckpointSnapshot Snapshot(long iteration) =>
        new(iteration, CheckpointStore.Files.ToDictionary(f => f, f => new byte[] { (byte)iteration }));

    static IEnumerable<long> Kept(string output) =>
        CheckpointStore.List(output).Select(d => long.Parse(Path.GetFileName(d)[CheckpointStore.Prefix.Length..])).Order();

    [Fact]
    public void Pruning_spares_the_recorded_best_and_forgets_it_when_turned_off()
    {
        using var dir = new TempFolder();
        var fids = new Dictionary<long, double> { [1] = 30, [2] = 12, [3] = 20, [4] = 25, [5] = 18 };
        foreach (var (it, fid) in fids)
        {
            CheckpointStore.Write(dir.Path, Snapshot(it), keep: 2);
            BestCheckpoint.Offer(dir.Path, BestCheckpoint.Of(it, new QualityColumns(Fid: fid)));
        }
        // What a restarted process reads: the newest two, and the lowest distance (iteration 2).
        Assert.Equal(2, BestCheckpoint.Read(dir.Path)!.Iteration);
        Assert.Equal([2L, 4, 5], Kept(dir.Path));

        CheckpointStore.Write(dir.Path, Snapshot(6), keep: 2);
        BestCheckpoint.Offer(dir.Path, BestCheckpoint.Of(6, new QualityColumns(Fid: 5)));
        CheckpointStore.Write(dir.Path, Snapshot(7), keep: 2);
        Assert.Equal([6L, 7], Kept(dir.Path));   // 6 is now both newest and best; 2 went

        BestCheckpoint.Clear(dir.Path);
        CheckpointStore.Write(dir.Path, Snapshot(8), keep: 1);
        Assert.Equal([8L], Kept(dir.Path));
    }

    [Fact]
    public void Mode_coverage_ranks_by_modes_then_high_quality_share()
    {
        var seven = BestCheckpoint.Of(1, new QualityColumns(Modes: 7, HighQuality: 0.95));
        var eight = BestCheckpoint.Of(2, new QualityColumns(Modes: 8, HighQuality: 0.60));
        var eightBetter = BestCheckpoint.Of(3, new QualityColumns(Modes: 8, HighQuality: 0.70));
        Assert.True(eight.BetterThan(seven));
        Assert.True(eightBetter.BetterThan(eight));
        Assert.False(seven.BetterThan(eightBetter));
        Assert.False(BestCheckpoint.Of(4, new QualityColumns(Fid: 1)).BetterThan(seven));   // another metric never wins
    }

    [Fact]
    public void A_ring8_run_with_keep_best_keeps_its_best_checkpoint_and_writes_quality_rows()
    {
        TorchSetup.Ensure();
        using var dir = new TempFolder();
        var spec = TinySpecs.Ring8(dir.Path, iterations: 120) with
        {
            Checkpoint = new CheckpointSpec { Every = 20, Keep = 1, KeepBest = true },
        };
        Assert.Empty(RunSpecValidator.Validate(spec));
        var log = new StringWriter();
        new LocalTrainer(spec, CPU, log).Run();

        var rows = MetricsCsv.Read(Path.Combine(dir.Path, "metrics.csv")).Where(r => r.IsQuality).ToList();
        Assert.Equal([20L, 40, 60, 80, 100, 120], rows.Select(r => r.Iteration));
        Assert.All(rows, r => Assert.NotNull(r.ElapsedSeconds));
        var best = BestCheckpoint.Read(dir.Path)!;
        var expected = rows.OrderByDescending(r => r.Modes).ThenByDescending(r => r.HighQuality).ThenBy(r => r.Iteration).First();
        Assert.Equal(expected.Iteration, best.Iteration);
        Assert.Equal((expected.Modes, expected.HighQuality), (best.Modes, best.HighQuality));
        Assert.Equal(new[] { best.Iteration, 120L }.Distinct().Order(), Kept(dir.Path));

        // Resumed with keepBest off: the record goes, and pruning keeps only the newest again.
        var more = spec with { Training = spec.Training with { Iterations = 140 }, Checkpoint = spec.Checkpoint with { KeepBest = false } };
        new LocalTrainer(more, CPU, TextWriter.Null).Run();
        Assert.Null(BestCheckpoint.Read(dir.Path));
        Assert.Equal([140L], Kept(dir.Path));
    }
}
