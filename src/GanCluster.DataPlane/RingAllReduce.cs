using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace GanCluster.DataPlane;

/// <summary>
/// The TCP backend of <see cref="ICollective"/>: ring all-reduce of float buffers, a reduce-scatter and an all-gather
/// of n−1 steps each over n chunks, so every rank sends and receives 2(n−1)/n·S bytes per operation whatever n is. Each
/// step sends on a dedicated thread while the calling thread receives, and every chunk moves in
/// <see cref="BlockBytes"/> blocks so that the add of one block overlaps the arrival of the next and a block is
/// forwarded as soon as it is reduced. A weighted mean is preceded by a small all-gather of one record per rank
/// (weight, tag, flags: <see cref="RecordBytes"/> bytes after a frame header) so that every rank knows Σw, every tag
/// and every flag before the data moves; a tag that differs fails the operation on every rank, since every rank sees
/// all of them. <see cref="AllGather"/> uses the same small frames under its own step ids.
/// One operation at a time per instance; every rank must make the same sequence of calls with equal lengths.
/// When the ring encrypts (<see cref="Encrypted"/>), every frame header and every block travels as one AES-256-GCM
/// record (ciphertext plus a <see cref="TagBytes"/>-byte tag) whose 12-byte nonce is a per-direction counter, so a
/// modified, dropped, replayed or reordered record fails the operation; without encryption the data path is unchanged.
/// With <see cref="RingWire.Bf16"/> the sums' chunks travel as bf16 (half the bytes), added in fp32 at every hop and
/// rounded once more by each chunk's owner before the all-gather, so every rank still ends with the same bits. Every
/// record carries its rank's wire format, so ranks formed with different formats fail their first all-reduce (or
/// all-gather) on every rank, naming both; bf16 data frames have their own step ids, so a plain sum fails too.
/// </summary>
public sealed unsafe partial class RingAllReduce : ICollective
{
    /// <summary>Bytes of framing in front of every message (one message per ring step).</summary>
    public const int FrameHeaderBytes = Wire.HeaderSize;

    /// <summary>Bytes of one rank's record in the small exchange before a weighted mean (and in AllGather): weight, tag, flags.</summary>
    public const int RecordBytes = Wire.RecordSize;

    /// <summary>Pipelining granularity inside a step.</summary>
    public const int BlockBytes = 1 << 20;

    /// <summary>Bytes of authentication tag after every header and block when the ring encrypts.</summary>
    public const int TagBytes = 16;

    const int BlockFloats = BlockBytes / sizeof(float);
    const int NonceBytes = 12;
    // First four nonce bytes: the direction (connector → acceptor); the other eight are the record counter.
    const uint DirectionConnectorToAcceptor = 1;
    // Step ids of the weight exchange and of AllGather, far from the data steps and from each other so that a mix-up
    // cannot pass the header check.
    const int WeightStepBase = 1 << 20;
    const int GatherStepBase = 3 << 20;
    // Added to the data steps' ids of a bf16 ring: an fp32 rank must never read bf16 bytes as floats, or the reverse.
    const int Bf16StepBase = 4 << 20;

    readonly RingPeer[] _peers;
    readonly int _rank;
    readonly int _size;
    readonly TimeSpan _timeout;
    readonly Action<string>? _log;
    readonly Socket? _sendSocket;
    readonly Socket? _recvSocket;
    readonly float[] _staging = [];
    // Every rank's record of the running small exchange, reused by every operation.
    readonly double[] _values;
    readonly long[] _tags;
    readonly int[] _flags;
    readonly int[] _wires;
    readonly RingWire _wire;
    // bf16 ring: one block converted for sending, by the sender thread or (inline) the calling thread, never both at once.
    readonly ushort[] _wireOut = [];
    readonly string[] _weightPhases = [];
    readonly string[] _gatherPhases = [];
    readonly Thread? _sender;
    readonly SemaphoreSlim _work = new(0);
    readonly ManualResetEventSlim _senderIdle = new(true);
    readonly Progress _recvDone = new();
    readonly Progress _sendDone = new();
    readonly bool _encrypted;
    readonly int _inlineStepBytes;
    // Set when the ring encrypts: the sealing of the connection to the next rank and the opening of the one from
    // the previous rank, with ciphertext staging allocated once (one block plus its tag).
    readonly AesGcm? _sendCipher;
    readonly AesGcm? _recvCipher;
    readonly byte[] _sealed = [];
    readonly byte[] _opened = [];
    ulong _sendCounter;
    ulong _recvCounter;

    AllReduceException? _failure;
    volatile bool _disposed;
    int _busy;
    long _seq;
    long _bytesSent;
    long _bytesReceived;
    long _lastSent;
    long _lastReceived;
    Plan? _plan;   // the running operation's (the sender thread reads it)
    // Plans by buffer length: a GAN alternates D's and G's gradients, so one cached plan would be rebuilt every update.
    readonly Dictionary<int, Plan> _plans = [];

    // The operation handed to the sender thread; the calling thread keeps the buffer pinned until the sender is idle.
    float* _opData;
    long _opSeq;

    RingAllReduce(int rank, RingPeer[] peers, TimeSpan timeout, Action<string>? log, Socket? sendSocket, Socket? recvSocket,
        bool encrypt, byte[]? sendKey, byte[]? recvKey, int inlineStepBytes, RingWire wire)
    {
        _inlineStepBytes = inlineStepBytes;
        _wire = wire;
        _encrypted = encrypt;
        _rank = rank;
        _peers = peers;
        _size = peers.Length;
        _timeout = timeout;
        _log = log;
        _sendSocket = sendSocket;
        _recvSocket = recvSocket;
        _values = new double[_size];
        _tags = new long[_size];
        _flags = new int[_size];
        _wires = new int[_size];
        _wires[rank] = (int)wire;
        if (_size > 1)
        {
            if (wire == RingWire.Bf16)
                _wireOut = GC.AllocateUninitializedArray<ushort>(BlockFloats, pinned: true);
            _weightPhases = Enumerable.Range(0, _size - 1).Select(k => $"weight exchange step {k}").ToArray();
            _gatherPhases = Enumerable.Range(0, _size - 1).Select(k => $"all-gather of values step {k}").ToArray();
            _staging = GC.AllocateUninitializedArray<float>(BlockFloats, pinned: true);
            if (encrypt)
            {
                _sendCipher = new AesGcm(sendKey ?? throw new ArgumentNullException(nameof(sendKey)), TagBytes);
                _recvCipher = new AesGcm(recvKey ?? throw new ArgumentNullException(nameof(recvKey)), TagBytes);
                _sealed = GC.AllocateUninitializedArray<byte>(BlockBytes + TagBytes);
                _opened = GC.AllocateUninitializedArray<byte>(BlockBytes + TagBytes);
                CryptographicOperations.ZeroMemory(sendKey);
                CryptographicOperations.ZeroMemory(recvKey);
            }
            _sender = new Thread(SenderLoop) { IsBackground = true, Name = $"ring-send-{rank}" };
            _sender.Start();
        }
    }

    public int Rank => _rank;

    public int WorldSize => _size;

    /// <summary>
    /// True when the ring was built with <see cref="RingSecurity.Encrypt"/>: its data connections carry AES-256-GCM
    /// records only (a single-rank ring has no connections; it reports the setting).
    /// </summary>
    public bool Encrypted => _encrypted;

    /// <summary>How all-reduce sums move between ranks (<see cref="RingWire"/>); Broadcast and AllGather are exact either way.</summary>
    public RingWire WireFormat => _wire;

    /// <summary>Bytes written to the next rank since connect, framing included.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Bytes read from the previous rank since connect, framing included.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>Bytes sent by the last (or the running) operation.</summary>
    public long LastBytesSent => Interlocked.Read(ref _lastSent);

    /// <summary>Bytes received by the last (or the running) operation.</summary>
    public long LastBytesReceived => Interlocked.Read(ref _lastReceived);

    RingPeer NextPeer => _peers[(_rank + 1) % _size];

    RingPeer PrevPeer => _peers[(_rank - 1 + _size) % _size];

    /// <summary>
    /// Leaves Σ_r data_r in <paramref name="data"/> on every rank, bit-identical everywhere (with
    /// <see cref="RingWire.Bf16"/>: summed in fp32 at every hop, sent and finally rounded as bf16).
    /// </summary>
    /// <exception cref="AllReduceException">
    /// A peer failed, went silent past the timeout or sent bad framing; <paramref name="data"/> is then unspecified and
    /// this instance unusable (build a new ring).
    /// </exception>
    public void AllReduceSum(Span<float> data)
    {
        var seq = BeginOperation();
        try
        {
            if (_size > 1)
                RingSum(data, seq);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>
    /// Leaves Σ_r w_r·x_r / Σ_r w_r in <paramref name="data"/> on every rank (bit-identical) and returns Σ_r w_r,
    /// summed in double in rank order on every rank. When every weight is 0 the result is all zeros.
    /// <see cref="AllReduceMean"/> with tag 0 and no flags.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The weight is negative or not finite (nothing was sent).</exception>
    /// <exception cref="AllReduceException">As for <see cref="AllReduceSum"/>.</exception>
    public double AllReduceWeightedMean(Span<float> data, double weight) => AllReduceMean(data, weight).TotalWeight;

    /// <inheritdoc/>
    /// <remarks>
    /// Costs one small all-gather (n−1 frames of <see cref="FrameHeaderBytes"/> + <see cref="RecordBytes"/> bytes)
    /// before the ring sum. A tag mismatch, like any other failure, leaves this instance unusable.
    /// </remarks>
    public ReduceOutcome AllReduceMean(Span<float> data, double weight, long tag = 0, int flags = 0)
    {
        CollectiveChecks.CheckWeight(weight);
        var seq = BeginOperation();
        try
        {
            var outcome = new ReduceOutcome(weight, flags);
            if (_size > 1)
            {
                _values[_rank] = weight;
                _tags[_rank] = tag;
                _flags[_rank] = flags;
                ExchangeRecords(WeightStepBase, _weightPhases, data.Length, seq);
                if (CollectiveChecks.TagMismatch(_tags) is { } mismatch)
                    throw Fail(new AllReduceException($"rank {_rank}: all-reduce #{seq} refused: {mismatch}"));
                outcome = CollectiveChecks.Combine(_values, _flags);
            }
            // Each rank scales its own contribution first, so the reduced chunks are already the mean and the
            // all-gather hands out final values.
            var factor = CollectiveChecks.Factor(weight, outcome.TotalWeight);
            if (factor != 1f)
                VectorMath.Scale(data, factor);
            if (_size > 1)
                RingSum(data, seq);
            return outcome;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <inheritdoc/>
    /// <remarks>n−1 small frames per rank; a rank that runs another operation meanwhile fails the header check.</remarks>
    public double[] AllGather(double value)
    {
        var seq = BeginOperation();
        try
        {
            if (_size == 1)
                return [value];
            _values[_rank] = value;
            _tags[_rank] = 0;
            _flags[_rank] = 0;
            ExchangeRecords(GatherStepBase, _gatherPhases, 1, seq);
            return (double[])_values.Clone();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    long BeginOperation()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Volatile.Read(ref _failure) is { } failure)
            throw new AllReduceException($"rank {_rank}: the ring is unusable after an earlier failure: {failure.Message}", failure);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("Another all-reduce is running on this instance.");
        Interlocked.Exchange(ref _lastSent, 0);
        Interlocked.Exchange(ref _lastReceived, 0);
        return ++_seq;
    }

    /// <summary>
    /// An all-gather of every rank's record (<c>_values</c>, <c>_tags</c>, <c>_flags</c>): tiny
    /// frames, sent from this thread since they cannot fill a buffer. <paramref name="totalElements"/> goes in every
    /// header, so ranks that disagree on it fail the header check here, before any data moves.
    /// </summary>
    void ExchangeRecords(int stepBase, string[] phases, int totalElements, long seq)
    {
        Span<byte> frame = stackalloc byte[Wire.HeaderSize + RecordBytes];
        var record = frame[Wire.HeaderSize..];
        for (var k = 0; k < _size - 1; k++)
        {
            var sendIdx = (_rank - k + _size) % _size;
            var recvIdx = (_rank - k - 1 + 2 * _size) % _size;
            var step = stepBase + k;
            var phase = phases[k];
            Wire.WriteHeader(frame, new Wire.FrameHeader(step, seq, RecordBytes, totalElements));
            Wire.WriteRecord(record, _values[sendIdx], _tags[sendIdx], _flags[sendIdx], _wires[sendIdx]);
            try
            {
                // Header and record go as one record when encrypting (the receiver opens them the same way).
                if (_sendCipher == null)
                {
                    Wire.SendAll(_sendSocket!, frame);
                    AddSent(frame.Length);
                }
                else
                {
                    SendSealed(_sendSocket!, frame);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                throw Fail(SendFailure(e, phase, seq));
            }
            if (_recvCipher == null)
            {
                ReceiveFrameHeader(frame[..Wire.HeaderSize], step, seq, RecordBytes, totalElements, phase);
                ReceiveExact(record, phase, seq, "record");
            }
            else
            {
                ReceiveOpened(frame, phase, seq, "record frame");
                CheckFrameHeader(frame[..Wire.HeaderSize], step, seq, RecordBytes, totalElements, phase);
            }
            Wire.ReadRecord(record, out _values[recvIdx], out _tags[recvIdx], out _flags[recvIdx], out _wires[recvIdx]);
        }
        // Every rank sees every rank's format, so every rank refuses with the same words.
        for (var r = 1; r < _size; r++)
            if (_wires[r] != _wires[0])
                throw Fail(new AllReduceException(
                    $"rank {_rank}: {(stepBase == GatherStepBase ? "all-gather" : "all-reduce")} #{seq} refused: the ranks formed " +
                    $"the ring with different wire formats: rank 0 sends {((RingWire)_wires[0]).Name()}, rank {r} sends {((RingWire)_wires[r]).Name()}"));
    }

    /// <summary>The frame step id of data step <paramref name="s"/> in this ring's wire format.</summary>
    int DataStep(int s) => _wire == RingWire.Bf16 ? Bf16StepBase + s : s;

    /// <summary>Bytes of <paramref name="count"/> floats of an all-reduce on this ring's wire.</summary>
    long WireBytes(int count) => (long)count * _wire.ElementBytes();

    void RingSum(Span<float> data, long seq)
    {
        if (!_plans.TryGetValue(data.Length, out var plan))
        {
            if (_plans.Count >= 8)
                _plans.Clear();
            _plans[data.Length] = plan = Plan.Build(data.Length, _rank, _size, _inlineStepBytes);
        }
        _plan = plan;
        if (plan.Inline)
        {
            RingSumInline(data, plan, seq);
            return;
        }
        fixed (float* ptr = data)
        {
            _recvDone.Reset();
            _sendDone.Reset();
            _opData = ptr;
            _opSeq = seq;
            _senderIdle.Reset();
            _work.Release();
            try
            {
                ReceiveSteps(plan, ptr, seq);
            }
            catch (Exception e)
            {
                var error = e as AllReduceException
                    ?? Fail(new AllReduceException($"rank {_rank}: all-reduce #{seq} failed: {e.Message}", e));
                // The sender must stop reading the buffer before the pin is released.
                Abort();
                _senderIdle.Wait(_timeout + TimeSpan.FromSeconds(1));
                throw error;
            }
            if (!_senderIdle.Wait(_timeout * 2 + TimeSpan.FromSeconds(1)))
            {
                var e = Fail(new AllReduceException(
                    $"rank {_rank}: sending to {NextPeer} made no progress within the timeout in all-reduce #{seq}"));
                _senderIdle.Wait(_timeout + TimeSpan.FromSeconds(1));
                throw e;
            }
            if (Volatile.Read(ref _failure) is { } failure)
                throw failure;
        }
    }

    void ReceiveSteps(Plan plan, float* data, long seq)
    {
        Span<byte> header = stackalloc byte[Wire.HeaderSize];
        var staging = _staging.AsSpan();
        for (var s = 0; s < plan.Steps.Length; s++)
        {
            ref readonly var st = ref plan.Steps[s];
            var phase = plan.Phase(s);
            ReceiveFrameHeader(header, DataStep(s), seq, WireBytes(st.RecvCount), plan.Length, phase);
            var blocks = Plan.Blocks(st.RecvCount);
            for (var i = 0; i < blocks; i++)
            {
                // This chunk was sent in an earlier step; never overwrite a block the sender may still be reading.
                if (st.GuardSendStart >= 0 && !_sendDone.WaitFor(st.GuardSendStart + i + 1, _timeout * 2 + TimeSpan.FromSeconds(1)))
                    throw Fail(new AllReduceException(
                        $"rank {_rank}: sending to {NextPeer} made no progress within the timeout during {phase} of all-reduce #{seq}"));
                var offset = st.RecvOffset + i * BlockFloats;
                var count = Math.Min(BlockFloats, st.RecvCount - i * BlockFloats);
                ReceiveBlock(new Span<float>(data + offset, count), st, phase, seq, staging);
                _recvDone.Advance();
            }
        }
    }

    void SenderLoop()
    {
        while (true)
        {
            _work.Wait();
            if (_disposed)
            {
                _senderIdle.Set();
                return;
            }
            try
            {
                SendSteps(_plan!, _opData, _opSeq);
            }
            catch (Exception e)
            {
                // Anything unexpected still has to fail the operation rather than kill the process.
                Fail(e as AllReduceException ?? new AllReduceException($"rank {_rank}: sender failed: {e.Message}", e));
            }
            finally
            {
                _senderIdle.Set();
            }
        }
    }

    void SendSteps(Plan plan, float* data, long seq)
    {
        Span<byte> header = stackalloc byte[Wire.HeaderSize];
        var socket = _sendSocket!;
        for (var s = 0; s < plan.Steps.Length; s++)
        {
            ref readonly var st = ref plan.Steps[s];
            var blocks = Plan.Blocks(st.SendCount);
            try
            {
                Wire.WriteHeader(header, new Wire.FrameHeader(DataStep(s), seq, WireBytes(st.SendCount), plan.Length));
                SendData(socket, header);
                for (var i = 0; i < blocks; i++)
                {
                    // From step 1 on, the outgoing chunk is the one received (and reduced) in the previous step:
                    // forward each block as soon as it is ready.
                    if (st.PrevRecvStart >= 0 && !_recvDone.WaitFor(st.PrevRecvStart + i + 1, _timeout * 2 + TimeSpan.FromSeconds(1)))
                    {
                        if (Volatile.Read(ref _failure) != null)
                            return;
                        throw new AllReduceException(
                            $"rank {_rank}: receiving from {PrevPeer} made no progress within the timeout during {plan.Phase(s)} of all-reduce #{seq}");
                    }
                    var offset = st.SendOffset + i * BlockFloats;
                    var count = Math.Min(BlockFloats, st.SendCount - i * BlockFloats);
                    SendBlock(socket, new ReadOnlySpan<float>(data + offset, count));
                    _sendDone.Advance();
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                Fail(SendFailure(e, plan.Phase(s), seq));
                return;
            }
        }
    }

    /// <summary>Closes the sockets; an operation running on another thread fails with <see cref="AllReduceException"/>.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Interlocked.CompareExchange(ref _failure,
            new AllReduceException($"rank {_rank}: this RingAllReduce was disposed"), null);
        Abort();
        if (_sender != null)
        {
            _work.Release();
            if (Thread.CurrentThread != _sender)
                _sender.Join(TimeSpan.FromSeconds(2));
        }
        // A thread still inside a cipher call gets ObjectDisposedException, which fails its operation like the sockets do.
        _sendCipher?.Dispose();
        _recvCipher?.Dispose();
    }
}
