using GanCluster.Training.Spec;

namespace GanCluster.Training.Tests.Quality;

/// <summary>The spec options of the quality score: validated with messages that name them; free to change on resume.</summary>
public sealed class QualitySpecTests
{
    static RunSpec Mnist(string quality, bool keepBest) => new()
    {
        Name = "m",
        Dataset = new DatasetSpec { Kind = "mnist", Path = "/data/mnist", ImageSize = 28 },
        Model = new ModelSpec { Kind = "dcgan", Ngf = 8, Ndf = 8 },
        Checkpoint = new CheckpointSpec { KeepBest = keepBest },
        Evaluation = new EvaluationSpec { Quality = quality },
    };

    static IEnumerable<string> Fields(RunSpec s) => RunSpecValidator.Validate(s, checkPaths: false).Select(e => e.Field);

    [Fact]
    public void Options_are_checked_with_the_option_named()
    {
        Assert.Empty(Fields(Mnist("saves", keepBest: true)));
        Assert.Empty(Fields(Mnist("off", keepBest: false)));
        Assert.Equal(["evaluation.quality"], Fields(Mnist("sometimes", false)));
        Assert.Equal(["checkpoint.keepBest"], Fields(Mnist("off", keepBest: true)));
        Assert.Equal(["evaluation.samples"], Fields(Mnist("saves", false) with { Evaluation = new EvaluationSpec { Quality = "saves", Samples = 50 } }));

        var ring = RunSpec.BuiltInDefault;
        Assert.Empty(Fields(ring with { Checkpoint = ring.Checkpoint with { KeepBest = true } }));   // 2-D runs rank by mode coverage
        var errors = RunSpecValidator.Validate(ring with { Evaluation = new EvaluationSpec { Quality = "saves" } });
        Assert.Equal("evaluation.quality", Assert.Single(errors).Field);
        Assert.Contains("mode coverage", errors[0].Reason);

        var folder = Mnist("saves", true) with { Dataset = new DatasetSpec { Kind = "folder", Path = "/x" } };
        Assert.Equal(["evaluation.quality", "checkpoint.keepBest"], Fields(folder));
    }

    [Fact]
    public void KeepBest_is_read_as_a_boolean_from_json()
    {
        var json = RunSpec.BuiltInDefault.ToJson().Replace("\"keepBest\": false", "\"keepBest\": true");
        Assert.Contains("\"keepBest\": true", json);
        Assert.True(RunSpecValidator.Parse(json).Checkpoint.KeepBest);
        var wrong = Assert.Throws<InvalidRunSpecException>(() => RunSpecValidator.Parse(json.Replace("\"keepBest\": true", "\"keepBest\": 1")));
        Assert.Equal("checkpoint.keepBest", Assert.Single(wrong.Errors).Field);
        Assert.Contains("true or false", wrong.Errors[0].Reason);
    }

    [Fact]
    public void Quality_options_may_change_when_a_run_resumes()
    {
        var before = Mnist("off", false);
        var after = Mnist("saves", true) with { Evaluation = new EvaluationSpec { Quality = "saves", Samples = 500 } };
        Assert.Empty(RunFolder.Differences(before, after));
    }
}
