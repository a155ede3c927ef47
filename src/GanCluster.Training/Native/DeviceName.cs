namespace GanCluster.Training.Native;

/// <summary>
/// A device as users write it, <c>cpu</c>, <c>cuda</c> or <c>cuda:N</c>: the one parser for <c>--device</c>,
/// <c>Node:Devices</c> and the device a worker reports. (<c>auto</c> and <c>all</c> are the callers' own words.)
/// </summary>
public readonly record struct DeviceName(bool Cuda, int? Index)
{
    /// <summary>The kind a run may not mix: <c>cpu</c> or <c>cuda</c>.</summary>
    public string Kind => Cuda ? "cuda" : "cpu";

    public override string ToString() => Cuda ? Index is { } i ? $"cuda:{i}" : "cuda" : "cpu";

    public static bool TryParse(string text, out DeviceName device)
    {
        device = default;
        var t = text.Trim().ToLowerInvariant();
        if (t == "cpu") return true;
        if (t == "cuda") { device = new DeviceName(true, null); return true; }
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t[5..], out var i) && i >= 0)
        {
            device = new DeviceName(true, i);
            return true;
        }
        return false;
    }

    /// <summary>The kind of a device string a worker reported (<c>cpu</c>, <c>cuda</c>), or the text itself when it is none.</summary>
    public static string KindOf(string text) => TryParse(text, out var d) ? d.Kind : text.Trim().ToLowerInvariant();
}
