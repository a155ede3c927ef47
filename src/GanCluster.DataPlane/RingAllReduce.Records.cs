using System.Net.Sockets;
using System.Security.Cryptography;

namespace GanCluster.DataPlane;

// The ring's record layer: frames and blocks sent and received as they are, or as AES-GCM records when the ring
// encrypts; failures turned into AllReduceException naming the peer; byte counters.
public sealed unsafe partial class RingAllReduce
{
    /// <summary>Sends one header or block: as is, or as one sealed record when encrypting.</summary>
    void SendData(Socket socket, ReadOnlySpan<byte> plain)
    {
        if (_sendCipher == null)
        {
            Wire.SendAll(socket, plain);
            AddSent(plain.Length);
        }
        else
        {
            SendSealed(socket, plain);
        }
    }

    /// <summary>Seals <paramref name="plain"/> (at most one block) under the next record number and sends it with its tag.</summary>
    void SendSealed(Socket socket, ReadOnlySpan<byte> plain)
    {
        Span<byte> nonce = stackalloc byte[NonceBytes];
        WriteNonce(nonce, _sendCounter++);
        var record = _sealed.AsSpan(0, plain.Length + TagBytes);
        _sendCipher!.Encrypt(nonce, plain, record[..plain.Length], record[plain.Length..]);
        Wire.SendAll(socket, record);
        AddSent(record.Length);
    }

    static void WriteNonce(Span<byte> nonce, ulong counter)
    {
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(nonce, DirectionConnectorToAcceptor);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter);
    }

    /// <summary>Receives one header or block into <paramref name="plain"/>: as is, or by opening one sealed record.</summary>
    void ReceiveData(Span<byte> plain, string phase, long seq)
    {
        if (_recvCipher == null)
            ReceiveExact(plain, phase, seq, "data");
        else
            ReceiveOpened(plain, phase, seq, "data");
    }

    /// <summary>Receives the next record (ciphertext and tag) and opens it into <paramref name="plain"/>; a bad tag fails the ring.</summary>
    void ReceiveOpened(Span<byte> plain, string phase, long seq, string what)
    {
        var record = _opened.AsSpan(0, plain.Length + TagBytes);
        ReceiveExact(record, phase, seq, what);
        Span<byte> nonce = stackalloc byte[NonceBytes];
        WriteNonce(nonce, _recvCounter++);
        try
        {
            _recvCipher!.Decrypt(nonce, record[..plain.Length], record[plain.Length..], plain);
        }
        catch (CryptographicException e)
        {
            throw Fail(new AllReduceException(
                $"rank {_rank}: a {what} record from {PrevPeer} failed authentication during {phase} of all-reduce #{seq} " +
                "(modified in transit, out of order, or not sealed with this connection's key)", e));
        }
    }

    void ReceiveFrameHeader(Span<byte> header, int step, long seq, long payloadBytes, int totalElements, string phase)
    {
        if (_recvCipher == null)
            ReceiveExact(header, phase, seq, "frame header");
        else
            ReceiveOpened(header, phase, seq, "frame header");
        CheckFrameHeader(header, step, seq, payloadBytes, totalElements, phase);
    }

    void CheckFrameHeader(ReadOnlySpan<byte> header, int step, long seq, long payloadBytes, int totalElements, string phase)
    {
        var h = Wire.ReadHeader(header, out var error);
        if (h == null)
            throw Fail(new AllReduceException(
                $"rank {_rank}: {PrevPeer} sent bad framing during {phase} of all-reduce #{seq}: {error}"));
        var got = h.Value;
        if (got.Seq == seq && Math.Abs(got.Step - step) == Bf16StepBase)
            throw Fail(new AllReduceException(
                $"rank {_rank}: {PrevPeer} sent {(got.Step > step ? "bf16" : "fp32")} data during {phase} of all-reduce #{seq}, " +
                $"this rank's ring uses {_wire.Name()}: the ranks formed the ring with different wire formats"));
        if (got.Seq != seq || got.Step != step || got.PayloadBytes != payloadBytes || got.TotalElements != totalElements)
            throw Fail(new AllReduceException(
                $"rank {_rank}: {PrevPeer} sent a mismatched frame during {phase} of all-reduce #{seq}: expected " +
                $"op {seq}, step {step}, {payloadBytes} bytes of a {totalElements}-float buffer; got op {got.Seq}, " +
                $"step {got.Step}, {got.PayloadBytes} bytes of a {got.TotalElements}-float buffer"));
    }

    void ReceiveExact(Span<byte> buffer, string phase, long seq, string what)
    {
        var socket = _recvSocket!;
        var got = 0;
        while (got < buffer.Length)
        {
            int n;
            try
            {
                n = socket.Receive(buffer[got..], SocketFlags.None);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
            {
                throw Fail(new AllReduceException(
                    $"rank {_rank}: {PrevPeer} sent nothing for {_timeout.TotalSeconds:0.###} s during {phase} of " +
                    $"all-reduce #{seq} (timeout)", e));
            }
            catch (SocketException e)
            {
                throw Fail(new AllReduceException(
                    $"rank {_rank}: receiving from {PrevPeer} failed during {phase} of all-reduce #{seq}: {e.SocketErrorCode}", e));
            }
            catch (ObjectDisposedException e)
            {
                throw Fail(new AllReduceException(
                    $"rank {_rank}: the connection from {PrevPeer} was closed locally during {phase} of all-reduce #{seq}", e));
            }
            if (n == 0)
                throw Fail(new AllReduceException(
                    $"rank {_rank}: {PrevPeer} closed the connection during {phase} of all-reduce #{seq} " +
                    $"({got} of {buffer.Length} bytes of a {what} block received)"));
            got += n;
            AddReceived(n);
        }
    }

    AllReduceException SendFailure(Exception e, string phase, long seq) => e switch
    {
        SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock } => new AllReduceException(
            $"rank {_rank}: {NextPeer} accepted no data for {_timeout.TotalSeconds:0.###} s during {phase} of all-reduce #{seq} (timeout)", e),
        SocketException se => new AllReduceException(
            $"rank {_rank}: sending to {NextPeer} failed during {phase} of all-reduce #{seq}: {se.SocketErrorCode}", e),
        _ => new AllReduceException(
            $"rank {_rank}: the connection to {NextPeer} was closed locally during {phase} of all-reduce #{seq}", e),
    };

    /// <summary>
    /// Records the first failure (later ones are usually its echoes, e.g. a socket closed by the abort), closes the
    /// sockets so that both threads and both neighbours stop at once, and returns the first failure.
    /// </summary>
    AllReduceException Fail(AllReduceException e)
    {
        var first = Interlocked.CompareExchange(ref _failure, e, null) ?? e;
        if (ReferenceEquals(first, e))
            _log?.Invoke(e.Message);
        Abort();
        return first;
    }

    void Abort()
    {
        _recvDone.Abort();
        _sendDone.Abort();
        Close(_sendSocket);
        Close(_recvSocket);
    }

    static void Close(Socket? socket)
    {
        if (socket == null)
            return;
        try
        {
            // Shutdown wakes a thread blocked in send/recv on this socket; Dispose alone may not.
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed or reset.
        }
        socket.Dispose();
    }

    void AddSent(int n)
    {
        Interlocked.Add(ref _bytesSent, n);
        Interlocked.Add(ref _lastSent, n);
    }

    void AddReceived(int n)
    {
        Interlocked.Add(ref _bytesReceived, n);
        Interlocked.Add(ref _lastReceived, n);
    }
}
