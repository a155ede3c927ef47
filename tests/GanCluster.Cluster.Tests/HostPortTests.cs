using GanCluster.Actors;

namespace GanCluster.Cluster.Tests;

/// <summary>The one host:port parser (Node:Seeds, --cluster).</summary>
public class HostPortTests
{
    [Theory]
    [InlineData("127.0.0.1:4053", "127.0.0.1", 4053)]
    [InlineData(" gancluster-seed-0.gancluster-seed:4053 ", "gancluster-seed-0.gancluster-seed", 4053)]
    [InlineData("[::1]:65535", "[::1]", 65535)]
    public void Parses_host_and_port(string text, string host, int port)
    {
        Assert.True(HostPort.TryParse(text, out var hp));
        Assert.Equal(new HostPort(host, port), hp);
    }

    [Theory]
    [InlineData("seed")]
    [InlineData(":4053")]
    [InlineData("seed:0")]
    [InlineData("seed:65536")]
    [InlineData("seed:port")]
    public void Refuses_what_is_not_host_and_a_port(string text) => Assert.False(HostPort.TryParse(text, out _));

    [Fact]
    public void A_list_keeps_the_good_entries_and_names_the_bad_ones()
    {
        var list = HostPort.ParseList("a:1, b:x ,c:3,,", out var bad);
        Assert.Equal([new HostPort("a", 1), new HostPort("c", 3)], list);
        Assert.Equal(["b:x"], bad);
    }
}
