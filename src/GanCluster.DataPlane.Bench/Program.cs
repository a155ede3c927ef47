using System.Globalization;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Bench;

/// <summary>
/// Usage: GanCluster.DataPlane.Bench [--workers 2,4] [--mb 25] [--iters 20] [--warmup 3] [--timeout 30] [--sockbuf-kb 0]
///        [--security plain,auth,encrypt] [--busy-ms 0] [--inline-kb 1024] [--wire fp32] [--verbose]
/// --busy-ms: each rank computes (spins) this long before every timed all-reduce, which is then a weighted mean, as a
/// worker's update is; without it a one-float all-reduce lines the ranks up first and the timed call is a plain sum.
/// --inline-kb: the ring's limit for steps sent from the calling thread (0: every step through the sender thread).
/// --wire: the ring's wire format for all-reduce sums, fp32 and/or bf16 (a list runs each, side by side).
/// The parent is only a coordinator: it spawns worker processes (this executable with a hidden --child mode),
/// hands them each other's addresses and collects their timings; gradient bytes flow worker to worker.
/// --security runs the ring without a secret (plain), with the authenticated handshake (auth) and with AES-256-GCM
/// on every block (encrypt), side by side; the children get a random secret from the parent through the environment.
/// </summary>
static class Program
{
    public static int Main(string[] args)
    {
        try
        {
            if (args.Length > 0 && args[0] == "--fake-peer")
                return FakePeer.Run(args[1..]);
            var options = Options.Parse(args);
            return options.ChildMode != null ? Child.Run(options) : Coordinator.Run(options);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine("usage: GanCluster.DataPlane.Bench [--workers 2,4] [--mb 25] [--iters 20] [--warmup 3] [--timeout 30] [--sockbuf-kb 0] [--security plain,auth,encrypt] [--busy-ms 0] [--inline-kb 1024] [--wire fp32,bf16] [--verbose]");
            return 2;
        }
        catch (Exception e) when (e is IOException or TimeoutException or InvalidOperationException or SocketException or AllReduceException)
        {
            Console.Error.WriteLine($"bench failed: {e.Message}");
            return 1;
        }
    }
}

sealed record Options
{
    public int[] Workers { get; init; } = [2, 4];
    public double Megabytes { get; init; } = 25;
    public int Iterations { get; init; } = 20;
    public int Warmup { get; init; } = 3;
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);
    public bool Verbose { get; init; }

    /// <summary>Ring security modes to measure: plain (no secret), auth (secret, authenticated handshake), encrypt (AES-256-GCM).</summary>
    public string[] Security { get; init; } = ["plain", "auth", "encrypt"];

    /// <summary>Environment variable through which the coordinator hands its workers the (random, per run) cluster secret.</summary>
    public const string SecretVariable = "GANCLUSTER_BENCH_RING_SECRET";

    /// <summary>SO_SNDBUF/SO_RCVBUF for the ring and the plain-socket references; 0 = kernel autotuning (the library default).</summary>
    public int SocketBufferBytes { get; init; }

    /// <summary>Milliseconds each rank spins before every timed all-reduce (0: ranks lined up by a barrier instead).</summary>
    public double BusyMs { get; init; }

    /// <summary>The ring's limit for steps sent from the calling thread (RingAllReduce.InlineStepBytes by default).</summary>
    public int InlineStepBytes { get; init; } = RingAllReduce.InlineStepBytes;

    /// <summary>Wire formats to measure (RingWire names); a child gets exactly one.</summary>
    public string[] Wires { get; init; } = ["fp32"];

    // Hidden child-mode arguments, set by the coordinator.
    public string? ChildMode { get; init; }
    public string? Rendezvous { get; init; }
    public int Rank { get; init; }
    public int WorldSize { get; init; }

    /// <summary>Buffer size in bytes (MB = 10^6 bytes), a whole number of floats.</summary>
    public long Bytes => (long)(Megabytes * 1e6) / sizeof(float) * sizeof(float);

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int(string s, int min) => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min
                ? v : throw new ArgumentException($"'{s}' is not an integer >= {min}");
            o = args[i] switch
            {
                "--workers" => o with { Workers = Next().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => Int(s, 1)).ToArray() },
                "--mb" => o with
                {
                    Megabytes = double.TryParse(Next(), NumberStyles.Float, CultureInfo.InvariantCulture, out var mb) && mb > 0 && mb <= 4000
                        ? mb : throw new ArgumentException("--mb must be in (0, 4000]"),
                },
                "--iters" => o with { Iterations = Int(Next(), 1) },
                "--warmup" => o with { Warmup = Int(Next(), 0) },
                "--timeout" => o with { Timeout = TimeSpan.FromSeconds(Int(Next(), 1)) },
                "--verbose" => o with { Verbose = true },
                "--sockbuf-kb" => o with { SocketBufferBytes = Int(Next(), 0) * 1024 },
                "--busy-ms" => o with
                {
                    BusyMs = double.TryParse(Next(), NumberStyles.Float, CultureInfo.InvariantCulture, out var ms) && ms >= 0 && ms <= 1000
                        ? ms : throw new ArgumentException("--busy-ms must be in [0, 1000]"),
                },
                "--inline-kb" => o with { InlineStepBytes = Int(Next(), 0) is var kb && kb <= RingAllReduce.BlockBytes / 1024 ? kb * 1024 : throw new ArgumentException($"--inline-kb must be in [0, {RingAllReduce.BlockBytes / 1024}] (one block)") },
                "--security" => o with
                {
                    Security = Next().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(m => m is "plain" or "auth" or "encrypt"
                        ? m : throw new ArgumentException($"--security takes plain, auth and/or encrypt, not '{m}'")).Distinct().ToArray(),
                },
                "--wire" => o with
                {
                    Wires = Next().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(m => m is "fp32" or "bf16"
                        ? m : throw new ArgumentException($"--wire takes fp32 and/or bf16, not '{m}'")).Distinct().ToArray(),
                },
                "--child" => o with { ChildMode = Next() },
                "--rendezvous" => o with { Rendezvous = Next() },
                "--rank" => o with { Rank = Int(Next(), 0) },
                "--world" => o with { WorldSize = Int(Next(), 1) },
                _ => throw new ArgumentException($"unknown argument '{args[i]}'"),
            };
        }
        if (o.Workers.Length == 0)
            throw new ArgumentException("--workers needs at least one count");
        if (o.Security.Length == 0)
            throw new ArgumentException("--security needs at least one mode");
        if (o.Wires.Length == 0)
            throw new ArgumentException("--wire needs at least one format");
        return o;
    }
}
