using GanCluster.Engine;
using GanCluster.Protocol;
using GanCluster.Training.Spec;

namespace GanCluster.Training.Tests;

/// <summary>Whose a run folder is, and where a cluster run may write.</summary>
public class RunFolderTests
{
    public RunFolderTests() => TorchSetup.Ensure();

    [Fact]
    public void A_folder_belongs_to_the_spec_that_wrote_it_and_only_what_is_trained_counts()
    {
        var spec = TinySpecs.Ring8("out", 10);
        // More iterations, other logging and checkpoints: the same run going on.
        var longer = spec with { Training = spec.Training with { Iterations = 500, LogEvery = 7 }, Checkpoint = new CheckpointSpec { Every = 3, Keep = 9 } };
        Assert.Empty(RunFolder.Differences(spec, longer));
        var other = spec with { Model = spec.Model with { Ngf = 64 }, Training = spec.Training with { LrD = 0.5 } };
        Assert.Equal(["model.ngf", "training.lrD"], RunFolder.Differences(spec, other));
    }

    [Fact]
    public void Another_spec_cannot_resume_a_local_run_folder_and_is_told_whose_it_is()
    {
        using var dir = new TempFolder();
        var output = Path.Combine(dir.Path, "out");
        var spec = TinySpecs.Ring8(output, 4);
        new LocalTrainer(spec, TorchSharp.torch.CPU, TextWriter.Null).Run();
        var metrics = File.ReadAllText(Path.Combine(output, "metrics.csv"));
        var checkpoints = Directory.GetDirectories(Path.Combine(output, "checkpoints"));

        var intruder = spec with { Name = "intruder", Checkpoint = new CheckpointSpec { Every = 1, Keep = 1 } };
        var e = Assert.Throws<InvalidRunSpecException>(() => new LocalTrainer(intruder, TorchSharp.torch.CPU, TextWriter.Null).Run());
        Assert.Contains(e.Errors, x => x.Field == "output" && x.Reason.Contains("belongs to run \"tiny-ring8\"") && x.Reason.Contains("name"));
        // Nothing of the owner's was touched: not its metrics, not its checkpoints.
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(output, "metrics.csv")));
        Assert.Equal(checkpoints, Directory.GetDirectories(Path.Combine(output, "checkpoints")));
    }

    [Theory]
    [InlineData("/etc/gancluster-test")]
    [InlineData("/tmp/escape")]
    [InlineData("../../../")]
    [InlineData("runs/../../x")]
    [InlineData("~/x")]
    public void A_cluster_output_must_be_a_relative_folder_that_stays_under_the_runs_root(string output)
    {
        Assert.NotNull(RunFolder.ClusterOutputProblem(output));
        Assert.Null(RunFolder.UnderRoot("/srv/runs", output));
    }

    [Fact]
    public void Relative_outputs_resolve_under_the_runs_root()
    {
        Assert.Null(RunFolder.ClusterOutputProblem("runs/mnist"));
        Assert.Equal("/srv/runs/runs/mnist", RunFolder.UnderRoot("/srv/runs", "runs/mnist"));
        Assert.Equal("/srv/runs/a/b", RunFolder.UnderRoot("/srv/runs/", "a/./b"));
        Assert.Null(RunFolder.UnderRoot("/srv/runs", "."));   // the root itself is every run's, no one's
    }
}
