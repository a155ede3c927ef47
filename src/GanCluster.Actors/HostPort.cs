namespace GanCluster.Actors;

/// <summary>A <c>host:port</c> address, as seeds and the client's <c>--cluster</c> name them: the one parser for them.</summary>
public readonly record struct HostPort(string Host, int Port)
{
    public override string ToString() => $"{Host}:{Port}";

    /// <summary>Parses <c>host:port</c> (port 1-65535; the last colon splits, so an IPv6 host keeps its own).</summary>
    public static bool TryParse(string text, out HostPort value)
    {
        value = default;
        var s = text.Trim();
        var i = s.LastIndexOf(':');
        if (i <= 0 || !int.TryParse(s[(i + 1)..], out var port) || port is < 1 or > 65535) return false;
        value = new HostPort(s[..i], port);
        return true;
    }

    /// <summary>Comma-separated <c>host:port</c> entries; the ones that do not parse come back in <paramref name="bad"/>.</summary>
    public static List<HostPort> ParseList(string text, out List<string> bad)
    {
        var list = new List<HostPort>();
        bad = [];
        foreach (var entry in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (TryParse(entry, out var hp)) list.Add(hp);
            else bad.Add(entry);
        }
        return list;
    }
}
