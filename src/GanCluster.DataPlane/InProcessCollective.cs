namespace GanCluster.DataPlane;

/// <summary>
/// The in-process backend of <see cref="ICollective"/>: one member per rank, the ranks being threads of one process
/// (tests, and world size 1 for local training). With one rank every operation is nearly free: no copies, no locks,
/// the data untouched (a weighted mean with weight 0 zeroes it, as the ring does). With more, the members meet in a
/// shared group: every rank waits until all have arrived at the operation (and checks that they made the same call
/// with the same length and tag), then in rank order each scales its own contribution by w_r/Σw and adds it into one
/// shared buffer, and every rank copies that buffer out, so the result is bit-identical on every rank. A broadcast is
/// rank 0's copy into the buffer. If a member is disposed, or a rank makes no progress within the timeout, the pending
/// and every later operation of the other members fail with <see cref="AllReduceException"/> instead of hanging.
/// It has no wire, hence no <see cref="RingWire"/>: it always sums in fp32, like an fp32 ring, which is what tests
/// compare it with; its one production use, a world of one, is left untouched by a bf16 ring too.
/// </summary>
public sealed class InProcessCollective : ICollective
{
    /// <summary>How long a rank waits for the others when <see cref="Create"/> is given no timeout.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    readonly Group? _group;
    readonly int _rank;
    readonly int _size;
    long _seq;
    int _busy;
    volatile bool _disposed;

    InProcessCollective(int rank, int size, Group? group)
    {
        _rank = rank;
        _size = size;
        _group = group;
    }

    /// <summary>One member per rank of a new group; hand member r to the thread that plays rank r.</summary>
    /// <param name="worldSize">Number of ranks, at least 1.</param>
    /// <param name="timeout">How long a rank waits for the others to make progress; null = <see cref="DefaultTimeout"/>.</param>
    public static InProcessCollective[] Create(int worldSize, TimeSpan? timeout = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        var t = timeout ?? DefaultTimeout;
        if (t <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), "The timeout must be positive.");
        if (worldSize == 1)
            return [new InProcessCollective(0, 1, null)];
        var group = new Group(worldSize, t);
        return Enumerable.Range(0, worldSize).Select(r => new InProcessCollective(r, worldSize, group)).ToArray();
    }

    public int Rank => _rank;

    /// <summary>Members of this group blocked in an operation right now (lets tests act on a pending operation).</summary>
    internal int Waiting => _group?.Waiting ?? 0;

    public int WorldSize => _size;

    /// <inheritdoc/>
    public ReduceOutcome AllReduceMean(Span<float> data, double weight, long tag = 0, int flags = 0)
    {
        CollectiveChecks.CheckWeight(weight);
        var seq = BeginOperation();
        try
        {
            if (_group == null)
            {
                // Σw is the own weight: factor 1 (nothing to do) or, with weight 0, the ring's all-zero result.
                if (weight == 0)
                    VectorMath.Scale(data, 0f);
                return new ReduceOutcome(weight, flags);
            }
            var slot = _group.Arrive(_rank, seq, Call.AllReduceMean, data.Length, weight, tag, flags);
            var outcome = CollectiveChecks.Combine(slot.Values, slot.Flags);
            var factor = CollectiveChecks.Factor(weight, outcome.TotalWeight);
            _group.WaitForTurns(slot, _rank, _rank, seq);
            // Only this rank touches the buffer until it hands the turn on.
            if (_rank == 0)
                slot.EnsureBuffer(data.Length);
            VectorMath.ScaleInto(slot.Buffer.AsSpan(0, data.Length), data, factor, add: _rank > 0);
            _group.PassTurn(slot);
            _group.WaitForTurns(slot, _size, _rank, seq);
            slot.Buffer.AsSpan(0, data.Length).CopyTo(data);
            return outcome;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <inheritdoc/>
    public void Broadcast(Span<float> data)
    {
        var seq = BeginOperation();
        try
        {
            if (_group == null)
                return;
            var slot = _group.Arrive(_rank, seq, Call.Broadcast, data.Length, 0, 0, 0);
            if (_rank == 0)
            {
                slot.EnsureBuffer(data.Length);
                data.CopyTo(slot.Buffer);
                _group.PassTurn(slot);
            }
            else
            {
                _group.WaitForTurns(slot, 1, _rank, seq);
                slot.Buffer.AsSpan(0, data.Length).CopyTo(data);
            }
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <inheritdoc/>
    public double[] AllGather(double value)
    {
        var seq = BeginOperation();
        try
        {
            if (_group == null)
                return [value];
            return (double[])_group.Arrive(_rank, seq, Call.AllGather, 1, value, 0, 0).Values.Clone();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    long BeginOperation()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("Another operation is running on this member.");
        return ++_seq;
    }

    /// <summary>
    /// Leaves the group: the other members' pending and later operations fail (as when a ring peer is lost); an
    /// operation of this member running on another thread fails too.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _group?.Fail(new AllReduceException($"rank {_rank} left the group (its InProcessCollective was disposed)"));
    }

    enum Call
    {
        None,
        AllReduceMean,
        Broadcast,
        AllGather,
    }

    /// <summary>
    /// The state of one operation. Two slots alternate by sequence number: a rank can be one operation ahead of the
    /// slowest (still copying out of the last one), never two, since starting operation s+2 needs every rank to
    /// have arrived at s+1, which each does only after it is done with s.
    /// </summary>
    sealed class Slot(int size)
    {
        public long Seq = -1;
        public int Arrived;
        // Ranks that have done their part of the data phase, in rank order; also the rank whose turn it is.
        public int Turns;
        public readonly Call[] Calls = new Call[size];
        public readonly int[] Lengths = new int[size];
        public readonly double[] Values = new double[size];
        public readonly long[] Tags = new long[size];
        public readonly int[] Flags = new int[size];
        public float[] Buffer = [];

        public void Reset(long seq)
        {
            Seq = seq;
            Arrived = 0;
            Turns = 0;
            Array.Clear(Calls);
        }

        public void EnsureBuffer(int length)
        {
            if (Buffer.Length < length)
                Buffer = GC.AllocateUninitializedArray<float>(length);
        }

        /// <summary>Null when every rank made rank 0's call with its length; else names the first that did not.</summary>
        public string? CallMismatch()
        {
            for (var r = 1; r < Calls.Length; r++)
                if (Calls[r] != Calls[0] || Lengths[r] != Lengths[0])
                    return $"the ranks made different calls: rank 0 called {Calls[0]} with length {Lengths[0]}, " +
                           $"rank {r} called {Calls[r]} with length {Lengths[r]}";
            return null;
        }
    }

    sealed class Group(int size, TimeSpan timeout)
    {
        readonly object _gate = new();
        readonly Slot[] _slots = [new Slot(size), new Slot(size)];
        AllReduceException? _failure;
        int _waiting;

        public int Waiting
        {
            get
            {
                lock (_gate)
                    return _waiting;
            }
        }

        /// <summary>Records this rank's call, waits for every rank's, and checks that they match.</summary>
        public Slot Arrive(int rank, long seq, Call call, int length, double value, long tag, int flags)
        {
            lock (_gate)
            {
                if (_failure is { } failure)
                    throw Failed(rank, seq, failure);
                var slot = _slots[seq & 1];
                if (slot.Seq != seq)
                    slot.Reset(seq);
                slot.Calls[rank] = call;
                slot.Lengths[rank] = length;
                slot.Values[rank] = value;
                slot.Tags[rank] = tag;
                slot.Flags[rank] = flags;
                slot.Arrived++;
                Monitor.PulseAll(_gate);
                Wait(slot, arrivals: true, size, rank, seq);
                // Every rank checks the same records, so all fail alike, each with its own exception.
                var mismatch = slot.CallMismatch() ?? (call == Call.AllReduceMean ? CollectiveChecks.TagMismatch(slot.Tags) : null);
                if (mismatch != null)
                    throw Record(new AllReduceException($"rank {rank}: operation #{seq} refused: {mismatch}"));
                return slot;
            }
        }

        public void WaitForTurns(Slot slot, int turns, int rank, long seq)
        {
            lock (_gate)
                Wait(slot, arrivals: false, turns, rank, seq);
        }

        public void PassTurn(Slot slot)
        {
            lock (_gate)
            {
                slot.Turns++;
                Monitor.PulseAll(_gate);
            }
        }

        public void Fail(AllReduceException e)
        {
            lock (_gate)
                Record(e);
        }

        /// <summary>
        /// Under the lock: waits until the slot's arrivals (or turns) reach <paramref name="target"/>. The timeout
        /// restarts at every progress, so it bounds a silent rank, not a long operation.
        /// </summary>
        void Wait(Slot slot, bool arrivals, int target, int rank, long seq)
        {
            var progress = -1;
            long deadline = 0;
            while (true)
            {
                var count = arrivals ? slot.Arrived : slot.Turns;
                // Done wins over a failure that came after it, as for a ring peer that leaves after the operation.
                if (count >= target)
                    return;
                if (_failure is { } failure)
                    throw Failed(rank, seq, failure);
                var now = Environment.TickCount64;
                if (slot.Arrived + slot.Turns != progress)
                {
                    progress = slot.Arrived + slot.Turns;
                    deadline = now + (long)Math.Ceiling(timeout.TotalMilliseconds);
                }
                if (now >= deadline)
                    throw Record(new AllReduceException(
                        $"rank {rank}: {(arrivals ? Missing(slot) : $"rank {slot.Turns} did not add its part")} within " +
                        $"{timeout.TotalSeconds:0.###} s in operation #{seq}"));
                _waiting++;
                try
                {
                    Monitor.Wait(_gate, (int)Math.Min(deadline - now, int.MaxValue));
                }
                finally
                {
                    _waiting--;
                }
            }
        }

        static string Missing(Slot slot)
        {
            var missing = Enumerable.Range(0, slot.Calls.Length).Where(r => slot.Calls[r] == Call.None);
            return $"rank(s) {string.Join(", ", missing)} did not arrive";
        }

        /// <summary>Under the lock: keeps the first failure and wakes every waiting rank.</summary>
        AllReduceException Record(AllReduceException e)
        {
            _failure ??= e;
            Monitor.PulseAll(_gate);
            return e;
        }

        static AllReduceException Failed(int rank, long seq, AllReduceException failure) =>
            new($"rank {rank}: operation #{seq} failed: the group is unusable: {failure.Message}", failure);
    }
}
