using System.Text.Json.Nodes;

namespace GanCluster.Tests.Shared;

/// <summary>
/// Bad run specs, each with the field its error must name: what a careless or hostile user sends. Built from one valid
/// spec by mutation (nulls, wrong types, out-of-range values, unknown and repeated keys, sizes that would exhaust
/// memory, broken JSON), so that every field of the format is covered.
/// </summary>
public static class HostileSpecs
{
    public sealed record Case(string Name, string Json, string Field)
    {
        public override string ToString() => Name;
    }

    /// <summary>A valid spec (a tiny ring8 run) to mutate.</summary>
    public static JsonObject Valid() => JsonNode.Parse("""
        {"name": "hostile", "dataset": {"kind": "ring8", "size": 1000},
         "model": {"kind": "mlp", "nz": 2, "ngf": 8, "ndf": 8},
         "training": {"k": 1, "iterations": 5, "batchSize": 16, "lrD": 0.001, "lrG": 0.001, "beta1": 0.5, "beta2": 0.999,
                      "loss": "non-saturating", "seed": 1, "logEvery": 5},
         "checkpoint": {"every": 5, "keep": 1},
         "output": "out"}
        """)!.AsObject();

    static Case Set(string name, string path, JsonNode? value, string? field = null)
    {
        var spec = Valid();
        var parts = path.Split('.');
        var target = spec;
        foreach (var p in parts[..^1]) target = target[p]!.AsObject();
        target[parts[^1]] = value;
        return new Case(name, spec.ToJsonString(), field ?? path);
    }

    static Case Raw(string name, string json, string field) => new(name, json, field);

    public static IReadOnlyList<Case> All()
    {
        var cases = new List<Case>();
        // Sections that are null, or not objects.
        foreach (var section in new[] { "dataset", "model", "training", "checkpoint" })
        {
            cases.Add(Set($"{section} null", section, null));
            cases.Add(Set($"{section} a string", section, "x"));
            cases.Add(Set($"{section} an array", section, new JsonArray(1, 2)));
        }
        // Strings that are null, numbers or objects.
        foreach (var f in new[] { "name", "dataset.kind", "model.kind", "training.loss", "training.optimizerD", "training.optimizerG",
                                  "training.gNoise", "training.lrDecay", "training.batchMode", "dataset.placement", "dataset.resize",
                                  "training.precision", "training.memoryFormat", "training.wirePrecision" })
        {
            cases.Add(Set($"{f} null", f, null));
            cases.Add(Set($"{f} a number", f, 7));
        }
        // Numbers that are null, strings, fractions or booleans.
        foreach (var f in new[] { "training.k", "training.iterations", "training.batchSize", "training.logEvery", "training.seed",
                                  "checkpoint.every", "checkpoint.keep", "dataset.size", "training.maxNonFiniteSkips", "training.maxFailuresPerHour" })
        {
            cases.Add(Set($"{f} null", f, null));
            cases.Add(Set($"{f} a string", f, "12"));
            cases.Add(Set($"{f} a fraction", f, 1.5));
            cases.Add(Set($"{f} true", f, true));
        }
        // Out of range.
        foreach (var (f, v) in new (string, JsonNode)[]
                 {
                     ("training.k", 0), ("training.k", -1), ("training.k", 1000), ("training.iterations", 0), ("training.batchSize", 0),
                     ("training.batchSize", -5), ("training.logEvery", 0), ("checkpoint.every", 0), ("checkpoint.keep", 0),
                     ("dataset.size", 0), ("training.maxNonFiniteSkips", 0), ("training.maxFailuresPerHour", -1),
                     ("training.lrD", 0), ("training.lrG", -0.1), ("training.beta1", 1), ("training.beta2", -0.5), ("training.momentumD", 2),
                     ("training.sampleEvery", -3), ("model.nz", 0), ("model.ngf", -4), ("model.ndf", 0), ("dataset.imageSize", 30),
                 })
            cases.Add(Set($"{f} = {v.ToJsonString()}", f, v));
        // Numbers beyond double.
        foreach (var f in new[] { "training.lrD", "training.lrG", "training.beta1", "training.beta2" })
            cases.Add(Raw($"{f} = 1e400", Valid().ToJsonString().Replace($"\"{f.Split('.')[1]}\":", $"\"{f.Split('.')[1]}\":1e400,\"_\":"), f));
        // Enumerations with unknown values.
        foreach (var (f, v) in new[] { ("dataset.kind", "imagenet"), ("model.kind", "stylegan"), ("training.loss", "wasserstein"),
                                       ("training.optimizerD", "lbfgs"), ("training.gNoise", "sometimes"), ("training.lrDecay", "cosine"),
                                       ("training.batchMode", "local"), ("dataset.placement", "disk"), ("training.precision", "fp16"),
                                       ("training.memoryFormat", "nhwc"), ("training.wirePrecision", "int8") })
            cases.Add(Set($"{f} = {v}", f, v));
        // Names that could become paths.
        foreach (var v in new[] { "", "../../etc", "a/b", new string('n', 65), "name with spaces" })
            cases.Add(Set($"name \"{(v.Length > 12 ? v[..12] + "…" : v)}\"", "name", v));
        // Models too large to train: the estimate must refuse them before any allocation.
        cases.Add(Set("model.ngf = 100000", "model.ngf", 100000, "model.ngf"));
        cases.Add(Set("model.ndf = 1000000", "model.ndf", 1000000, "model.ndf"));
        cases.Add(Set("training.batchSize = 2e9", "training.batchSize", 2_000_000_000, "training.batchSize"));
        // Model and data that do not go together.
        cases.Add(Set("dcgan on ring8", "model.kind", "dcgan", "model.kind"));
        cases.Add(Set("channels_last for mlp", "training.memoryFormat", "channels_last", "training.memoryFormat"));
        var mnist = Valid();
        mnist["dataset"] = new JsonObject { ["kind"] = "mnist" };
        cases.Add(new Case("mnist without a path", mnist.ToJsonString(), "dataset.path"));
        // Quality scoring and best-checkpoint retention (issue 14).
        cases.Add(Set("evaluation.quality sometimes", "evaluation", new JsonObject { ["quality"] = "sometimes" }, "evaluation.quality"));
        cases.Add(Set("evaluation.quality saves on ring8", "evaluation", new JsonObject { ["quality"] = "saves" }, "evaluation.quality"));
        cases.Add(Set("evaluation.samples 10", "evaluation", new JsonObject { ["samples"] = 10 }, "evaluation.samples"));
        cases.Add(Set("evaluation.samples a string", "evaluation", new JsonObject { ["samples"] = "2000" }, "evaluation.samples"));
        cases.Add(Set("checkpoint.keepBest a string", "checkpoint.keepBest", "yes"));
        cases.Add(Set("checkpoint.keepBest null", "checkpoint.keepBest", null));
        // Unknown, miscased and repeated keys.
        cases.Add(Set("unknown top-level field", "outputs", "x", "outputs"));
        cases.Add(Set("unknown training field", "training.learningRate", 0.1));
        cases.Add(Set("miscased training.LrD", "training.LrD", 0.1));
        cases.Add(Set("miscased Name", "Name", "x"));
        var json = Valid().ToJsonString();
        cases.Add(Raw("duplicate training.k", json.Replace("\"k\":1,", "\"k\":1,\"k\":7,"), "training.k"));
        cases.Add(Raw("duplicate top-level name", json.Replace("\"name\":\"hostile\",", "\"name\":\"hostile\",\"name\":\"other\","), "name"));
        cases.Add(Raw("duplicate model.ngf", json.Replace("\"ngf\":8,", "\"ngf\":8,\"ngf\":900000,"), "model.ngf"));
        cases.Add(Raw("duplicate dataset section", json.Replace("\"dataset\":", "\"dataset\":{\"kind\":\"ring8\"},\"dataset\":"), "dataset"));
        cases.Add(Raw("duplicate checkpoint.every", json.Replace("\"every\":5,", "\"every\":5,\"every\":6,"), "checkpoint.every"));
        // Not a spec at all.
        cases.Add(Raw("empty", "", "(json)"));
        cases.Add(Raw("not JSON", "this is not json", "(json)"));
        cases.Add(Raw("a JSON array", "[1, 2, 3]", "(json)"));
        cases.Add(Raw("a JSON number", "42", "(json)"));
        cases.Add(Raw("JSON null", "null", "(json)"));
        cases.Add(Raw("truncated", json[..(json.Length / 2)], "(json)"));
        cases.Add(Raw("trailing garbage", json + "}}}", "(json)"));
        cases.Add(Raw("nested 10,000 deep", new string('[', 10_000) + new string(']', 10_000), "(json)"));
        return cases;
    }

    /// <summary>A spec larger than any run spec may be (but below Akka's frame limit, so a seed does receive it).</summary>
    public static Case Oversized() =>
        Raw("80 KB spec", Valid().ToJsonString().Replace("\"output\":", $"\"padding\":\"{new string('x', 80_000)}\",\"output\":"), "(spec)");
}
