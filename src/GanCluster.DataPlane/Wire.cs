using System.Buffers.Binary;
using System.Net.Sockets;

namespace GanCluster.DataPlane;

/// <summary>
/// Little-endian wire formats: the 32-byte handshake fields (the start of the hello and the acknowledgement of the
/// authenticated handshake in <see cref="RingHandshake"/>), the 32-byte frame header and the 24-byte record of the
/// small exchange (weight, tag, flags, wire format). Version 3: that record gained the tag and the flags (version 2 sent
/// the weight alone); version 4: it gained the sender's <see cref="RingWire"/>, so that every rank sees every rank's.
/// The handshake is the one of version 2.
/// </summary>
static class Wire
{
    public const int HandshakeSize = 32;
    public const int HeaderSize = 32;
    public const int RecordSize = sizeof(double) + sizeof(long) + sizeof(int) + sizeof(int);
    public const ushort Version = 4;
    public const uint HandshakeMagic = 0x48444347; // "GCDH"
    public const uint FrameMagic = 0x46444347;     // "GCDF"
    public const ushort KindHello = 1;
    public const ushort KindAck = 2;

    public readonly record struct Handshake(ushort Version, ushort Kind, long Session, int Sender, int Receiver, int WorldSize);

    public readonly record struct FrameHeader(int Step, long Seq, long PayloadBytes, int TotalElements);

    public static void WriteHandshake(Span<byte> b, in Handshake h)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, HandshakeMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], h.Version);
        BinaryPrimitives.WriteUInt16LittleEndian(b[6..], h.Kind);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], h.Session);
        BinaryPrimitives.WriteInt32LittleEndian(b[16..], h.Sender);
        BinaryPrimitives.WriteInt32LittleEndian(b[20..], h.Receiver);
        BinaryPrimitives.WriteInt32LittleEndian(b[24..], h.WorldSize);
        BinaryPrimitives.WriteUInt32LittleEndian(b[28..], Fnv1a(b[..28]));
    }

    /// <summary>Parses a handshake; null and a reason when the bytes are not a well-formed one.</summary>
    public static Handshake? ReadHandshake(ReadOnlySpan<byte> b, out string? error)
    {
        error = null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != HandshakeMagic)
        {
            error = $"bad magic 0x{BinaryPrimitives.ReadUInt32LittleEndian(b):x8} (not a GanCluster ring peer)";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(b[28..]) != Fnv1a(b[..28]))
        {
            error = "handshake checksum mismatch";
            return null;
        }
        return new Handshake(
            BinaryPrimitives.ReadUInt16LittleEndian(b[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(b[6..]),
            BinaryPrimitives.ReadInt64LittleEndian(b[8..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[20..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[24..]));
    }

    /// <summary>True while the bytes so far are a prefix of the handshake magic (lets garbage be cut off early).</summary>
    public static bool StartsWithHandshakeMagic(ReadOnlySpan<byte> b)
    {
        Span<byte> magic = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(magic, HandshakeMagic);
        var n = Math.Min(4, b.Length);
        return b[..n].SequenceEqual(magic[..n]);
    }

    public static void WriteHeader(Span<byte> b, in FrameHeader h)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, FrameMagic);
        BinaryPrimitives.WriteInt32LittleEndian(b[4..], h.Step);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], h.Seq);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], h.PayloadBytes);
        BinaryPrimitives.WriteInt32LittleEndian(b[24..], h.TotalElements);
        BinaryPrimitives.WriteUInt32LittleEndian(b[28..], Fnv1a(b[..28]));
    }

    public static FrameHeader? ReadHeader(ReadOnlySpan<byte> b, out string? error)
    {
        error = null;
        var magic = BinaryPrimitives.ReadUInt32LittleEndian(b);
        if (magic != FrameMagic)
        {
            error = $"bad frame magic 0x{magic:x8}";
            return null;
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(b[28..]) != Fnv1a(b[..28]))
        {
            error = "frame header checksum mismatch";
            return null;
        }
        return new FrameHeader(
            BinaryPrimitives.ReadInt32LittleEndian(b[4..]),
            BinaryPrimitives.ReadInt64LittleEndian(b[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(b[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(b[24..]));
    }

    public static void WriteRecord(Span<byte> b, double value, long tag, int flags, int wire)
    {
        BinaryPrimitives.WriteDoubleLittleEndian(b, value);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], tag);
        BinaryPrimitives.WriteInt32LittleEndian(b[16..], flags);
        BinaryPrimitives.WriteInt32LittleEndian(b[20..], wire);
    }

    public static void ReadRecord(ReadOnlySpan<byte> b, out double value, out long tag, out int flags, out int wire)
    {
        value = BinaryPrimitives.ReadDoubleLittleEndian(b);
        tag = BinaryPrimitives.ReadInt64LittleEndian(b[8..]);
        flags = BinaryPrimitives.ReadInt32LittleEndian(b[16..]);
        wire = BinaryPrimitives.ReadInt32LittleEndian(b[20..]);
    }

    public static uint Fnv1a(ReadOnlySpan<byte> bytes)
    {
        var h = 2166136261;
        foreach (var x in bytes)
            h = (h ^ x) * 16777619;
        return h;
    }

    /// <summary>Sends every byte (a blocking send may return early, e.g. when interrupted).</summary>
    public static void SendAll(Socket s, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = s.Send(data, SocketFlags.None);
            data = data[n..];
        }
    }

    /// <summary>Fills <paramref name="buffer"/>; returns how many bytes arrived before the peer closed.</summary>
    public static int ReceiveAll(Socket s, Span<byte> buffer)
    {
        var got = 0;
        while (got < buffer.Length)
        {
            var n = s.Receive(buffer[got..], SocketFlags.None);
            if (n == 0)
                return got;
            got += n;
        }
        return got;
    }
}

static class SocketTuning
{
    /// <summary>
    /// 0 leaves the buffers to the kernel: Linux autotuning grows them up to net.ipv4.tcp_[rw]mem's maximum, while an
    /// explicit SO_SNDBUF/SO_RCVBUF switches autotuning off and is capped by net.core.[rw]mem_max.
    /// </summary>
    public static void ApplyBuffers(Socket s, int bytes)
    {
        if (bytes <= 0)
            return;
        s.SendBufferSize = bytes;
        s.ReceiveBufferSize = bytes;
    }

    public static void ApplyData(Socket s, TimeSpan timeout)
    {
        s.NoDelay = true;
        var ms = (int)Math.Clamp(Math.Ceiling(timeout.TotalMilliseconds), 1, int.MaxValue);
        s.SendTimeout = ms;
        s.ReceiveTimeout = ms;
    }
}
