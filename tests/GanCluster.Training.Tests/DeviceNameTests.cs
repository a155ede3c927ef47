using GanCluster.Training.Native;

namespace GanCluster.Training.Tests;

/// <summary>The one parser of device names (--device, Node:Devices, a worker's reported device).</summary>
public class DeviceNameTests
{
    [Theory]
    [InlineData("cpu", false, null, "cpu")]
    [InlineData(" CUDA ", true, null, "cuda")]
    [InlineData("cuda:3", true, 3, "cuda")]
    public void Parses_cpu_cuda_and_cuda_n(string text, bool cuda, int? index, string kind)
    {
        Assert.True(DeviceName.TryParse(text, out var d));
        Assert.Equal((cuda, index, kind), (d.Cuda, d.Index, d.Kind));
        Assert.Equal(text.Trim().ToLowerInvariant(), d.ToString());
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("auto")]
    [InlineData("all")]
    public void Refuses_anything_else(string text) => Assert.False(DeviceName.TryParse(text, out _));

    [Fact]
    public void The_kind_of_a_reported_device_ignores_its_index() =>
        Assert.Equal(["cpu", "cuda", "cuda", "tpu"], new[] { "cpu", "cuda:0", "CUDA:7", "tpu" }.Select(DeviceName.KindOf));
}
