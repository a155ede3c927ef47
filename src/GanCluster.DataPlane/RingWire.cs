namespace GanCluster.DataPlane;

/// <summary>
/// How a ring's all-reduce moves gradients between neighbours; chosen when the group is formed, the same on every rank.
/// </summary>
public enum RingWire
{
    /// <summary>The fp32 values as they are.</summary>
    Fp32 = 1,

    /// <summary>
    /// bfloat16 (the upper half of each fp32, rounded to nearest even): half the bytes of <see cref="Fp32"/>. Every
    /// hop adds in fp32 and rounds what it sends on; the result is rounded once more by the chunk's owner, so every
    /// rank ends with the same bf16-representable values. Broadcast and AllGather stay exact.
    /// </summary>
    Bf16 = 2,
}

public static class RingWires
{
    /// <summary>The run spec's spelling: "fp32" or "bf16" (also what messages and logs print).</summary>
    public static string Name(this RingWire wire) => wire switch
    {
        RingWire.Fp32 => "fp32",
        RingWire.Bf16 => "bf16",
        _ => $"unknown wire format {(int)wire}",
    };

    /// <summary>Parses the run spec's <c>training.wirePrecision</c>.</summary>
    /// <exception cref="ArgumentException">Neither "fp32" nor "bf16".</exception>
    public static RingWire Parse(string name) => name switch
    {
        "fp32" => RingWire.Fp32,
        "bf16" => RingWire.Bf16,
        _ => throw new ArgumentException($"Unknown wire format \"{name}\" (fp32 or bf16).", nameof(name)),
    };

    /// <summary>Bytes one float takes on the wire in an all-reduce.</summary>
    internal static int ElementBytes(this RingWire wire) => wire == RingWire.Bf16 ? sizeof(ushort) : sizeof(float);
}
