namespace GanCluster.DataPlane;

/// <summary>Where rank <paramref name="Rank"/>'s <see cref="RingListener"/> accepts ring connections.</summary>
public sealed record RingPeer(int Rank, string Host, int Port)
{
    public override string ToString() => $"rank {Rank} ({Host}:{Port})";
}
