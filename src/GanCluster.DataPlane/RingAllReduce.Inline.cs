using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace GanCluster.DataPlane;

public sealed unsafe partial class RingAllReduce
{
    /// <summary>
    /// Steps whose chunks are at most this many bytes are sent from the calling thread, not the sender thread. Handing
    /// a step to the sender costs a wake-up, and on a busy machine the woken sender can wait in the run queue of a core
    /// where the peer is still computing. Measured on 2 cores, 2 processes each busy 1 ms before every all-reduce
    /// (<c>scripts/bench-ring-busy.sh</c>): ring8's 137 KB gradients took 1.42 ms through the sender and 0.24 ms from
    /// the calling thread; 2 MB took 2.54 against 0.93 ms (0.67 against 1.69 ms with idle ranks); from 4 MB on (steps
    /// over one block) the pipelined sender is as fast. One block is the most a step may have here, so a step sent
    /// this way is the same single block on the wire as the sender would send. Odd ranks receive before they send, so
    /// no cycle of ranks can all be blocked sending, whatever the socket buffers hold.
    /// <c>Connect(inlineStepBytes: 0)</c> turns it off (the benchmark compares both).
    /// </summary>
    public const int InlineStepBytes = BlockBytes;

    /// <summary>The ring sum, one step at a time on this thread: send one chunk and receive (and add) the next.</summary>
    void RingSumInline(Span<float> data, Plan plan, long seq)
    {
        Span<byte> header = stackalloc byte[Wire.HeaderSize];
        var socket = _sendSocket!;
        var staging = _staging.AsSpan();
        for (var s = 0; s < plan.Steps.Length; s++)
        {
            ref readonly var st = ref plan.Steps[s];
            var phase = plan.Phase(s);
            // Odd ranks receive first: a ring of blocking senders could otherwise wait on each other forever.
            if (_rank % 2 == 1)
                ReceiveStep(data, st, s, plan.Length, phase, seq, header, staging);
            try
            {
                Wire.WriteHeader(header, new Wire.FrameHeader(DataStep(s), seq, WireBytes(st.SendCount), plan.Length));
                SendData(socket, header);
                if (st.SendCount > 0)
                    SendBlock(socket, data.Slice(st.SendOffset, st.SendCount));
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                throw Fail(SendFailure(e, phase, seq));
            }
            if (_rank % 2 == 0)
                ReceiveStep(data, st, s, plan.Length, phase, seq, header, staging);
        }
    }

    void ReceiveStep(Span<float> data, in Step st, int s, int totalElements, string phase, long seq, Span<byte> header, Span<float> staging)
    {
        ReceiveFrameHeader(header, DataStep(s), seq, WireBytes(st.RecvCount), totalElements, phase);
        if (st.RecvCount == 0)
            return;
        ReceiveBlock(data.Slice(st.RecvOffset, st.RecvCount), st, phase, seq, staging);
    }

    /// <summary>
    /// Receives one block of a step into <paramref name="dst"/>: added to it in a reduce-scatter step, else copied.
    /// A bf16 block is widened to fp32 first; the owner's last add is rounded to bf16, the value every rank ends with.
    /// </summary>
    void ReceiveBlock(Span<float> dst, in Step st, string phase, long seq, Span<float> staging)
    {
        if (_wire == RingWire.Bf16)
        {
            var wire = MemoryMarshal.Cast<float, ushort>(staging)[..dst.Length];
            ReceiveData(MemoryMarshal.AsBytes(wire), phase, seq);
            if (st.Reduce)
                VectorMath.AddBf16(dst, wire, round: st.Finish);
            else
                VectorMath.FromBf16(wire, dst);
        }
        else if (st.Reduce)
        {
            var block = staging[..dst.Length];
            ReceiveData(MemoryMarshal.AsBytes(block), phase, seq);
            VectorMath.Add(dst, block);
        }
        else
        {
            ReceiveData(MemoryMarshal.AsBytes(dst), phase, seq);
        }
    }

    /// <summary>Sends one block of floats (at most <see cref="BlockFloats"/>): as is, or rounded to bf16.</summary>
    void SendBlock(Socket socket, ReadOnlySpan<float> block)
    {
        if (_wire == RingWire.Bf16)
        {
            var wire = _wireOut.AsSpan(0, block.Length);
            VectorMath.ToBf16(block, wire);
            SendData(socket, MemoryMarshal.AsBytes((ReadOnlySpan<ushort>)wire));
        }
        else
        {
            SendData(socket, MemoryMarshal.AsBytes(block));
        }
    }
}
