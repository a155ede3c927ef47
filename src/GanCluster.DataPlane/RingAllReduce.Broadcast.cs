using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace GanCluster.DataPlane;

public sealed unsafe partial class RingAllReduce
{
    // The step id of a broadcast's frame, far from the data and weight steps so that a mix-up cannot pass the header check.
    const int BroadcastStep = 2 << 20;

    /// <summary>
    /// Rank 0's <paramref name="data"/> on every rank, bit for bit (any float bits: nothing is added): a pipeline along
    /// the ring, 0 → 1 → … → n−1, each <see cref="BlockBytes"/> block forwarded as soon as it has arrived. Every rank
    /// but the last sends S bytes and every rank but 0 receives S: half of an all-reduce's traffic, with no arithmetic.
    /// Every rank must pass the same length.
    /// </summary>
    /// <exception cref="AllReduceException">As for <see cref="AllReduceSum"/>; a length that differs fails the header check.</exception>
    public void Broadcast(Span<float> data)
    {
        var seq = BeginOperation();
        try
        {
            if (_size == 1)
                return;
            var bytes = MemoryMarshal.AsBytes(data);
            var forward = (_rank + 1) % _size != 0;   // the last rank does not send back to rank 0
            const string phase = "broadcast from rank 0";
            Span<byte> header = stackalloc byte[Wire.HeaderSize];
            if (_rank != 0)
                ReceiveFrameHeader(header, BroadcastStep, seq, bytes.Length, data.Length, phase);
            if (forward)
            {
                Wire.WriteHeader(header, new Wire.FrameHeader(BroadcastStep, seq, bytes.Length, data.Length));
                SendOrFail(header, phase, seq);
            }
            for (var offset = 0; offset < bytes.Length; offset += BlockBytes)
            {
                var block = bytes.Slice(offset, Math.Min(BlockBytes, bytes.Length - offset));
                if (_rank != 0)
                    ReceiveData(block, phase, seq);
                if (forward)
                    SendOrFail(block, phase, seq);
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Sends from the calling thread (the pipeline needs no sender thread: it never waits on itself).</summary>
    void SendOrFail(ReadOnlySpan<byte> plain, string phase, long seq)
    {
        try
        {
            SendData(_sendSocket!, plain);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw Fail(SendFailure(e, phase, seq));
        }
    }
}
