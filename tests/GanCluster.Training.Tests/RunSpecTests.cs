using GanCluster.Training.Spec;

namespace GanCluster.Training.Tests;

public class RunSpecTests
{
    [Fact]
    public void The_documented_spec_parses_with_every_field()
    {
        using var dir = new TempFolder();
        var json = $$"""
        {"name": "mnist-dcgan",
         "dataset": {"kind": "mnist", "path": "{{dir.Path}}", "imageSize": 28},
         "model": {"kind": "dcgan", "nz": 100, "ngf": 64, "ndf": 64},
         "training": {"k": 1, "iterations": 2000, "batchSize": 128, "lrD": 0.0002, "lrG": 0.0002,
                      "beta1": 0.5, "beta2": 0.999, "loss": "non-saturating", "seed": 1},
         "checkpoint": {"every": 500, "keep": 3},
         "output": "runs/name"}
        """;
        var s = RunSpecValidator.Parse(json);
        Assert.Equal("mnist-dcgan", s.Name);
        Assert.Equal(("mnist", 28), (s.Dataset.Kind, s.Dataset.ImageSize));
        Assert.Equal((100, 64, 64), (s.Model.ResolvedNz, s.Model.ResolvedNgf, s.Model.ResolvedNdf));
        Assert.Equal((1, 2000, 128), (s.Training.K, s.Training.Iterations, s.Training.BatchSize));
        Assert.Equal((0.0002, 0.0002, 0.5, 0.999), (s.Training.LrD, s.Training.LrG, s.Training.Beta1, s.Training.Beta2));
        Assert.Equal(("non-saturating", 1L), (s.Training.Loss, s.Training.Seed));
        Assert.Equal((500, 3), (s.Checkpoint.Every, s.Checkpoint.Keep));
        Assert.Equal("runs/name", s.Output);
        // Round trip through the serializer used for checkpoints.
        Assert.Equal(s, RunSpecValidator.Parse(s.ToJson()));
    }

    [Fact]
    public void Every_invalid_field_is_listed_with_its_reason()
    {
        var json = """
        {"name": "bad name!",
         "dataset": {"kind": "mnist", "imageSize": 48},
         "model": {"kind": "mlp", "nz": 0},
         "training": {"k": 0, "iterations": -5, "batchSize": 0, "lrD": -1, "lrG": 0, "beta1": 1.5, "loss": "hinge"},
         "checkpoint": {"every": 0, "keep": 0}}
        """;
        var e = Assert.Throws<InvalidRunSpecException>(() => RunSpecValidator.Parse(json, "bad.json"));
        var fields = e.Errors.Select(x => x.Field).ToHashSet();
        foreach (var f in new[] { "name", "dataset.path", "dataset.imageSize", "model.kind", "model.nz", "training.k", "training.iterations",
                     "training.batchSize", "training.lrD", "training.lrG", "training.beta1", "training.loss", "checkpoint.every", "checkpoint.keep" })
            Assert.Contains(f, fields);
        Assert.Contains("bad.json", e.Message);
        Assert.Contains("training.loss: must be non-saturating or minimax (got \"hinge\")", e.Message);
    }

    [Fact]
    public void Unknown_and_mistyped_fields_are_all_reported()
    {
        var json = """{"name": "x", "datset": {}, "training": {"k": "three", "iterations": 1.5, "lr": 0.1}}""";
        var e = Assert.Throws<InvalidRunSpecException>(() => RunSpecValidator.Parse(json));
        Assert.Contains(e.Errors, x => x.Field == "datset" && x.Reason.StartsWith("unknown field"));
        Assert.Contains(e.Errors, x => x.Field == "training.k" && x.Reason.Contains("expected an integer"));
        Assert.Contains(e.Errors, x => x.Field == "training.iterations" && x.Reason.Contains("expected an integer"));
        Assert.Contains(e.Errors, x => x.Field == "training.lr" && x.Reason.StartsWith("unknown field"));
    }

    [Fact]
    public void Missing_dataset_path_and_bad_json_are_explained()
    {
        var missing = Assert.Throws<InvalidRunSpecException>(() =>
            RunSpecValidator.Parse("""{"dataset": {"kind": "cifar10", "path": "/nonexistent/cifar"}, "model": {"kind": "dcgan"}}"""));
        Assert.Contains(missing.Errors, x => x.Field == "dataset.path" && x.Reason.Contains("/nonexistent/cifar does not exist"));

        var broken = Assert.Throws<InvalidRunSpecException>(() => RunSpecValidator.Parse("{\"name\": "));
        Assert.Equal("(json)", Assert.Single(broken.Errors).Field);
        Assert.Throws<InvalidRunSpecException>(() => RunSpecValidator.Load("/nonexistent/spec.json"));
    }

    [Fact]
    public void The_built_in_default_is_valid() => Assert.Empty(RunSpecValidator.Validate(RunSpec.BuiltInDefault));
}
