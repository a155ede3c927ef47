using System.Globalization;

namespace GanCluster.Reports;

/// <summary>
/// metrics.csv read by its header's column names, whatever their order: interval rows (losses, D outputs, img/s) and
/// quality rows (fid, class_kl, confident for images; modes, high_quality for 2-D data) leave each other's cells empty.
/// Unknown columns are kept, empty or unparsable cells are skipped, and a short or half-written line loses only its
/// missing cells: a report of a live run must not fail on the row being appended.
/// </summary>
public sealed class RunMetrics
{
    /// <summary>Columns this report knows and charts (the rest are listed as <see cref="UnknownColumns"/>).</summary>
    public static readonly IReadOnlyList<string> KnownColumns =
        ["iteration", "loss_d", "loss_g", "d_x", "d_g_z", "img_per_s", "elapsed_s", "skipped", "fid", "class_kl", "confident", "modes", "high_quality"];

    /// <summary>The quality columns, in the order they are charted.</summary>
    public static readonly IReadOnlyList<string> QualityColumns = ["fid", "class_kl", "confident", "modes", "high_quality"];

    readonly Dictionary<string, List<(double Iteration, double Value)>> _series;

    RunMetrics(IReadOnlyList<string> columns, Dictionary<string, List<(double, double)>> series, int rows, int badLines)
    {
        Columns = columns;
        _series = series;
        Rows = rows;
        BadLines = badLines;
    }

    /// <summary>The header's columns, as written.</summary>
    public IReadOnlyList<string> Columns { get; }

    /// <summary>Data lines with an iteration.</summary>
    public int Rows { get; }

    /// <summary>Lines skipped because they had no readable iteration (a half-written last line, a stray text line).</summary>
    public int BadLines { get; }

    public IReadOnlyList<string> UnknownColumns => Columns.Where(c => !KnownColumns.Contains(c)).ToList();

    /// <summary>(iteration, value) of every row whose cell in <paramref name="column"/> is a finite number, by iteration.</summary>
    public IReadOnlyList<(double Iteration, double Value)> Series(string column) =>
        _series.TryGetValue(column, out var s) ? s : [];

    public bool Has(string column) => Series(column).Count > 0;

    /// <summary>The value of <paramref name="column"/> in the row of <paramref name="iteration"/>, if one has it.</summary>
    public double? At(string column, long iteration)
    {
        foreach (var (it, v) in Series(column))
            if (it == iteration) return v;
        return null;
    }

    /// <summary>The last iteration of any row (null when there are none).</summary>
    public long? LastIteration => Series("iteration") is { Count: > 0 } s ? (long)s[^1].Value : null;

    /// <summary>Reads <paramref name="path"/>; a file without an <c>iteration</c> column is refused with the header it has.</summary>
    public static RunMetrics Read(string path)
    {
        // FileShare.ReadWrite: the trainer holds the file open for appending.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd());
    }

    public static RunMetrics Parse(string text)
    {
        var lines = text.Replace("\r\n", "\n").Split('\n');
        var header = lines[0].Trim();
        if (header.Length == 0) return new RunMetrics([], [], 0, 0);
        var columns = header.Split(',').Select(c => c.Trim()).ToList();
        var iterationAt = columns.IndexOf("iteration");
        if (iterationAt < 0)
            throw new InvalidDataException($"metrics.csv has no \"iteration\" column (header: {Shorten(header)})");

        // Last row wins for an iteration logged twice (a resumed run re-logs what it trains again).
        var cells = columns.Select(_ => new SortedDictionary<double, double>()).ToList();
        int rows = 0, bad = 0;
        foreach (var raw in lines.Skip(1))
        {
            var line = raw.Trim();
            if (line.Length == 0) continue;
            var fields = line.Split(',');
            if (iterationAt >= fields.Length || !TryNumber(fields[iterationAt], out var iteration))
            {
                bad++;
                continue;
            }
            rows++;
            for (var c = 0; c < columns.Count && c < fields.Length; c++)
                if (TryNumber(fields[c], out var v)) cells[c][iteration] = v;
        }
        var series = new Dictionary<string, List<(double, double)>>(StringComparer.Ordinal);
        for (var c = 0; c < columns.Count; c++)
            if (cells[c].Count > 0) series[columns[c]] = cells[c].Select(kv => (kv.Key, kv.Value)).ToList();
        return new RunMetrics(columns, series, rows, bad);
    }

    static bool TryNumber(string cell, out double value) =>
        double.TryParse(cell.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);

    static string Shorten(string s) => s.Length <= 120 ? s : s[..117] + "...";
}
