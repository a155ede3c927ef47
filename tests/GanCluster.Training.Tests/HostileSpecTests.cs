using System.Collections.Concurrent;

namespace GanCluster.Training.Tests;

/// <summary>Every bad spec through <c>train --local</c> as a user runs it: exit 2 with an error naming the field; no crash, no hang.</summary>
public class HostileSpecTests
{
    [Fact]
    public void Over_a_hundred_bad_specs_through_train_local_each_get_an_error_naming_the_field()
    {
        var cases = HostileSpecs.All().Append(HostileSpecs.Oversized()).ToList();
        Assert.True(cases.Count >= 100, $"{cases.Count} cases");
        using var dir = new TempFolder();
        var problems = new ConcurrentBag<string>();
        var slowest = TimeSpan.Zero;
        Parallel.ForEach(cases.Select((c, i) => (c, i)), new ParallelOptions { MaxDegreeOfParallelism = 2 }, x =>
        {
            var (c, i) = x;
            var path = Path.Combine(dir.Path, $"spec-{i}.json");
            File.WriteAllText(path, c.Json);
            CliProcess.Result r;
            try
            {
                r = CliProcess.Run(["train", "--local", path, "--device", "cpu", "--output", Path.Combine(dir.Path, $"out-{i}")], timeoutSeconds: 60);
            }
            catch (TimeoutException)
            {
                problems.Add($"{c.Name}: hung (no exit within 60 s)");
                return;
            }
            lock (problems) if (r.Elapsed > slowest) slowest = r.Elapsed;
            var output = r.StdOut + r.StdErr;
            if (output.Contains("Unhandled exception", StringComparison.Ordinal) || output.Contains("   at ", StringComparison.Ordinal))
                problems.Add($"{c.Name}: crashed: {output}");
            else if (r.ExitCode != 2)
                problems.Add($"{c.Name}: exit {r.ExitCode}, expected 2: {output}");
            else if (!r.StdErr.Split('\n').Any(l => l.Trim().TrimStart('-').Trim().Split(": ")[0].Split(", ").Contains(c.Field)))
                problems.Add($"{c.Name}: the error does not name {c.Field}: {r.StdErr}");
            else if (Directory.Exists(Path.Combine(dir.Path, $"out-{i}")))
                problems.Add($"{c.Name}: refused, but it created its output folder");
        });
        Assert.True(problems.IsEmpty, $"{problems.Count} of {cases.Count} bad specs mishandled:\n" + string.Join("\n", problems));
        Console.WriteLine($"hostile specs through train --local: {cases.Count} refused, 0 crashes, 0 hangs; slowest answer {slowest.TotalSeconds:F2} s");
    }
}
