namespace GanCluster.DataPlane;

public sealed unsafe partial class RingAllReduce
{
    /// <summary>Which chunk each step sends and receives, and where its blocks sit in the pipeline order.</summary>
    sealed class Plan
    {
        public required int Length { get; init; }
        public required int Size { get; init; }
        public required Step[] Steps { get; init; }
        /// <summary>Every step is small enough to go from the calling thread (<see cref="InlineStepBytes"/>).</summary>
        public bool Inline { get; init; }

        public static int Blocks(int count) => (count + BlockFloats - 1) / BlockFloats;

        public string Phase(int s) => s < Size - 1 ? $"reduce-scatter step {s}" : $"all-gather step {s - (Size - 1)}";

        public static Plan Build(int length, int rank, int n, int inlineStepBytes)
        {
            int baseCount = length / n, extra = length % n;
            int Offset(int c) => c * baseCount + Math.Min(c, extra);
            int Count(int c) => baseCount + (c < extra ? 1 : 0);
            int Mod(int x) => ((x % n) + n) % n;

            var sendChunk = new int[2 * (n - 1)];
            var recvChunk = new int[2 * (n - 1)];
            for (var k = 0; k < n - 1; k++)
            {
                // Reduce-scatter: pass on the partial sum received last step; afterwards rank r owns chunk r+1.
                sendChunk[k] = Mod(rank - k);
                recvChunk[k] = Mod(rank - k - 1);
                // All-gather: pass on the finished chunk received last step, starting with the owned one.
                sendChunk[n - 1 + k] = Mod(rank + 1 - k);
                recvChunk[n - 1 + k] = Mod(rank - k);
            }

            var steps = new Step[sendChunk.Length];
            long recvStart = 0;
            for (var s = 0; s < steps.Length; s++)
            {
                long guard = -1;
                long g = 0;
                for (var t = 0; t < s; t++)
                {
                    if (sendChunk[t] == recvChunk[s])
                        guard = g;
                    g += Blocks(Count(sendChunk[t]));
                }
                steps[s] = new Step(
                    Reduce: s < n - 1,
                    // The last reduce-scatter step: what it adds is the owned chunk's finished sum.
                    Finish: s == n - 2,
                    SendOffset: Offset(sendChunk[s]), SendCount: Count(sendChunk[s]),
                    RecvOffset: Offset(recvChunk[s]), RecvCount: Count(recvChunk[s]),
                    PrevRecvStart: s == 0 ? -1 : recvStart - Blocks(Count(recvChunk[s - 1])),
                    GuardSendStart: guard);
                recvStart += Blocks(Count(recvChunk[s]));
            }
            var inline = steps.All(st => Math.Max(st.SendCount, st.RecvCount) * sizeof(float) <= inlineStepBytes);
            return new Plan { Length = length, Size = n, Steps = steps, Inline = inline };
        }
    }

    readonly record struct Step(
        bool Reduce, bool Finish, int SendOffset, int SendCount, int RecvOffset, int RecvCount, long PrevRecvStart, long GuardSendStart);
}
