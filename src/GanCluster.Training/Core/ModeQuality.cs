namespace GanCluster.Training.Core;

/// <summary>Mode coverage of 2-D samples against a Gaussian mixture (PacGAN's protocol).</summary>
public sealed record ModeQualityResult(int ModesCovered, int Modes, double HighQualityFraction, int Samples)
{
    public override string ToString() => $"modes {ModesCovered}/{Modes}, high-quality {HighQualityFraction:P1} of {Samples}";
}

public static class ModeQuality
{
    /// <summary>
    /// A sample is high quality when it lies within 3 std of its nearest mode; a mode is covered when it is the
    /// nearest mode of at least one high-quality sample. <paramref name="xy"/> holds x0, y0, x1, y1, …
    /// </summary>
    public static ModeQualityResult Evaluate(ReadOnlySpan<float> xy, IReadOnlyList<(float X, float Y)> modes, float std)
    {
        var covered = new bool[modes.Count];
        var n = xy.Length / 2;
        var high = 0;
        var limit = 3.0 * std;
        for (var i = 0; i < n; i++)
        {
            double x = xy[2 * i], y = xy[2 * i + 1];
            var best = -1;
            var bestDist = double.MaxValue;
            for (var m = 0; m < modes.Count; m++)
            {
                var d = Math.Sqrt((x - modes[m].X) * (x - modes[m].X) + (y - modes[m].Y) * (y - modes[m].Y));
                if (d < bestDist) (best, bestDist) = (m, d);
            }
            if (bestDist <= limit)
            {
                high++;
                covered[best] = true;
            }
        }
        return new ModeQualityResult(covered.Count(c => c), modes.Count, n == 0 ? 0 : (double)high / n, n);
    }
}
