using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Bench;

/// <summary>
/// Spawns the workers, exchanges addresses through a loopback rendezvous and reports their timings.
/// It never opens a data connection: its only sockets are the line-based control channels.
/// </summary>
static class Coordinator
{
    sealed record WorkerResult(bool Correct, long Sent, long Received, double[] Times);

    static long s_controlBytes;

    public static int Run(Options o)
    {
        var size = o.Bytes;
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv,
            $"GanCluster.DataPlane.Bench: S = {size / 1e6:0.###} MB ({size / sizeof(float):N0} floats), {o.Iterations} timed iterations after {o.Warmup} warm-up"));
        var buffers = o.SocketBufferBytes > 0 ? $"SO_SNDBUF/SO_RCVBUF {o.SocketBufferBytes / 1024} KiB" : "kernel-autotuned socket buffers";
        Console.WriteLine(string.Create(inv,
            $"machine: {Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}; workers on 127.0.0.1, {buffers}; load average {LoadAverage()}"));
        Console.WriteLine(string.Create(inv, $"steps up to {o.InlineStepBytes / 1024} KiB from the calling thread; wire {string.Join(", ", o.Wires)}; ") + (o.BusyMs > 0
            ? string.Create(inv, $"each rank busy {o.BusyMs} ms before every timed weighted mean")
            : "ranks lined up by a one-float all-reduce before every timed sum"));
        if (o.Security.Contains("encrypt"))
            Console.WriteLine(AesGcmThroughput());
        Console.WriteLine();

        var rows = new List<(string Name, int Workers, double MedianMs, long Sent, long Received)>();
        var allCorrect = true;
        // One random cluster secret for this run, handed to the workers through their environment (never printed).
        var secret = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        foreach (var n in o.Workers)
        foreach (var wire in o.Wires)
        foreach (var security in o.Security)
        {
            var results = RunGroup("ring", n, o with { Wires = [wire] }, security, secret);
            // An all-reduce is done when the slowest rank is done.
            var times = Enumerable.Range(0, results[0].Times.Length).Select(i => results.Max(r => r.Times[i])).ToArray();
            var median = Median(times);
            long sent = results.Max(r => r.Sent), received = results.Max(r => r.Received);
            var correct = results.All(r => r.Correct);
            allCorrect &= correct;
            // fp32 keeps the names earlier tables used.
            var name = $"ring all-reduce, {security}" + (wire == "fp32" ? "" : $", {wire} wire");
            rows.Add((name, n, median, sent, received));
            if (n == 1)
            {
                Console.WriteLine(string.Create(inv,
                    $"{name}, 1 worker: a local no-op (median {median:0.000} ms, {sent} bytes sent); no bandwidth to report"));
                Console.WriteLine();
                continue;
            }
            var algBw = size / (median / 1e3) / 1e6;
            var ideal = 2.0 * (n - 1) / n * size * (wire == "bf16" ? 0.5 : 1);
            Console.WriteLine(string.Create(inv, $"{name}, {n} workers (separate processes; {Describe(security)}):"));
            Console.WriteLine(string.Create(inv, $"  time per all-reduce        median {median:0.00} ms (min {times.Min():0.00}, max {times.Max():0.00})"));
            Console.WriteLine(string.Create(inv, $"  algorithm bandwidth S/t    {algBw:0} MB/s"));
            Console.WriteLine(string.Create(inv, $"  bus bandwidth S/t·2(n−1)/n {algBw * 2 * (n - 1) / n:0} MB/s"));
            Console.WriteLine(string.Create(inv,
                $"  per process per all-reduce: sent {sent:N0} B, received {received:N0} B (2(n−1)/n·S{(wire == "bf16" ? "/2" : "")} = {ideal:N0} B; framing{(security == "encrypt" ? " and tags" : "")} {sent - (long)ideal:N0} B)"));
            Console.WriteLine($"  result check: {(correct ? "every rank holds the exact sum" : "WRONG RESULT")}");
            PrintTimes(o, times);
            Console.WriteLine();
        }

        foreach (var mode in new[] { "raw-copy", "raw-duplex" })
        {
            var results = RunGroup(mode, 2, o, "plain", secret);
            var times = mode == "raw-duplex" ? results[0].Times.Zip(results[1].Times, Math.Max).ToArray() : results[1].Times;
            var median = Median(times);
            rows.Add((mode == "raw-copy" ? "plain TCP copy, one way" : "plain TCP exchange, both ways at once", 2, median, -1, -1));
            Console.WriteLine(mode == "raw-copy"
                ? "plain TCP socket: one worker process sends S bytes to another (plus a 1-byte acknowledgement):"
                : "plain TCP exchange: two worker processes each send S bytes to the other at once (the 2-worker ring's traffic, no adds):");
            Console.WriteLine(string.Create(inv,
                $"  median {median:0.00} ms (min {times.Min():0.00}, max {times.Max():0.00}) = {size / (median / 1e3) / 1e6:0} MB/s"));
            PrintTimes(o, times);
            Console.WriteLine();
        }

        Console.WriteLine("summary (MB = 10^6 bytes):");
        Console.WriteLine("| what | workers | time (ms, median) | S/t (MB/s) | bus bw (MB/s) | sent/process (B) | received/process (B) |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows.Where(r => r.Workers > 1))
        {
            var alg = size / (r.MedianMs / 1e3) / 1e6;
            var ring = r.Sent >= 0;
            var bus = ring ? (alg * 2 * (r.Workers - 1) / r.Workers).ToString("0", inv) : "–";
            var sent = ring ? r.Sent.ToString("N0", inv) : "–";
            var received = ring ? r.Received.ToString("N0", inv) : "–";
            Console.WriteLine(string.Create(inv, $"| {r.Name} | {r.Workers} | {r.MedianMs:0.00} | {alg:0} | {bus} | {sent} | {received} |"));
        }
        foreach (var n in o.Workers.Where(n => n > 1))
        {
            var plainRow = rows.FirstOrDefault(r => r.Workers == n && r.Name == "ring all-reduce, plain");
            if (plainRow.Name == null)
                continue;
            foreach (var r in rows.Where(r => r.Workers == n && r.Sent >= 0 && r.Name != plainRow.Name))
                Console.WriteLine(string.Create(inv,
                    $"{n} workers: {r.Name} takes {r.MedianMs / plainRow.MedianMs:0.00} × the plain ring's time"));
        }
        var twoWorkers = rows.FirstOrDefault(r => r.Sent >= 0 && r.Workers == 2);
        if (twoWorkers.Name != null)
        {
            var copy = rows.First(r => r.Name.StartsWith("plain TCP copy", StringComparison.Ordinal)).MedianMs;
            var exchange = rows.First(r => r.Name.StartsWith("plain TCP exchange", StringComparison.Ordinal)).MedianMs;
            Console.WriteLine(string.Create(inv,
                $"ring, 2 workers: algorithm bandwidth = {copy / twoWorkers.MedianMs:0.00} × the one-way plain socket copy, {exchange / twoWorkers.MedianMs:0.00} × the two-way plain exchange"));
        }
        Console.WriteLine();
        var controlBytes = Interlocked.Read(ref s_controlBytes);
        Console.WriteLine(string.Create(inv,
            $"coordinator: {controlBytes:N0} bytes in total over its control channels (ports, session id, results); " +
            $"0 gradient bytes: it opens no data connection, the workers' ring sockets connect worker to worker."));
        Console.WriteLine(string.Create(inv, $"load average at the end: {LoadAverage()}"));
        return allCorrect ? 0 : 1;
    }

    /// <summary>One thread sealing and opening 1 MiB blocks, as the ring's sender and receiver do: the encryption's CPU cost.</summary>
    static string AesGcmThroughput()
    {
        var key = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        using var aes = new System.Security.Cryptography.AesGcm(key, 16);
        var plain = new byte[RingAllReduce.BlockBytes];
        var cipher = new byte[plain.Length];
        var tag = new byte[16];
        var nonce = new byte[12];
        long sealedBytes = 0, openedBytes = 0;
        double sealSeconds = 0, openSeconds = 0;
        for (var i = 0; i < 3 || sealSeconds + openSeconds < 0.4; i++)
        {
            BitConverter.TryWriteBytes(nonce, (long)i);
            var t0 = Stopwatch.GetTimestamp();
            aes.Encrypt(nonce, plain, cipher, tag);
            var t1 = Stopwatch.GetTimestamp();
            aes.Decrypt(nonce, cipher, tag, plain);
            var t2 = Stopwatch.GetTimestamp();
            sealSeconds += (t1 - t0) / (double)Stopwatch.Frequency;
            openSeconds += (t2 - t1) / (double)Stopwatch.Frequency;
            sealedBytes += plain.Length;
            openedBytes += plain.Length;
        }
        return string.Create(CultureInfo.InvariantCulture,
            $"AES-256-GCM on one thread of this process, 1 MiB blocks: seal {sealedBytes / sealSeconds / 1e6:0} MB/s, open {openedBytes / openSeconds / 1e6:0} MB/s");
    }

    static string Describe(string security) => security switch
    {
        "plain" => "no secret",
        "auth" => "secret, authenticated handshake, data in the clear",
        _ => "secret, AES-256-GCM on every header and 1 MiB block",
    };

    static void PrintTimes(Options o, double[] times)
    {
        if (o.Verbose)
            Console.WriteLine("  per iteration (ms): " + string.Join(' ', times.Select(t => t.ToString("0.0", CultureInfo.InvariantCulture))));
    }

    // The box may be shared; the load says how much to trust a timing.
    static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "n/a";
        }
    }

    static double Median(double[] xs)
    {
        var sorted = xs.Order().ToArray();
        var m = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
    }

    static WorkerResult[] RunGroup(string mode, int n, Options o, string security, string secret)
    {
        using var rendezvous = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        rendezvous.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        rendezvous.Listen(n);
        var port = ((IPEndPoint)rendezvous.LocalEndPoint!).Port;

        var processes = new List<Process>();
        var channels = new ControlChannel?[n];
        try
        {
            for (var r = 0; r < n; r++)
                processes.Add(StartWorker(mode, r, n, port, o, security, secret));

            // Workers identify themselves with their rank, in whatever order they connect.
            var ports = new int[n];
            for (var i = 0; i < n; i++)
            {
                if (!rendezvous.Poll(TimeSpan.FromSeconds(60), SelectMode.SelectRead))
                    throw new TimeoutException($"only {i} of {n} workers reported within 60 s");
                var channel = new ControlChannel(rendezvous.Accept(), o.Timeout * 4);
                var ready = channel.Receive("READY").Split(' ');
                var rank = int.Parse(ready[0], CultureInfo.InvariantCulture);
                channels[rank] = channel;
                ports[rank] = int.Parse(ready[1], CultureInfo.InvariantCulture);
            }
            var session = Random.Shared.NextInt64(1, long.MaxValue);
            var peers = string.Join(',', ports);
            foreach (var c in channels)
                c!.Send(string.Create(CultureInfo.InvariantCulture, $"PEERS {session} {peers}"));

            var results = channels.Select(c =>
            {
                var f = c!.Receive("RESULT").Split(' ');
                return new WorkerResult(f[0] == "ok",
                    long.Parse(f[1], CultureInfo.InvariantCulture),
                    long.Parse(f[2], CultureInfo.InvariantCulture),
                    f.Length > 3 && f[3].Length > 0 ? f[3].Split(',').Select(t => double.Parse(t, CultureInfo.InvariantCulture)).ToArray() : []);
            }).ToArray();
            foreach (var c in channels)
                c!.Send("BYE");
            foreach (var p in processes)
            {
                if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
                    throw new TimeoutException($"worker process {p.Id} did not exit");
                if (p.ExitCode != 0)
                    throw new InvalidOperationException($"worker process {p.Id} exited with {p.ExitCode}");
            }
            return results;
        }
        finally
        {
            foreach (var c in channels)
            {
                if (c == null)
                    continue;
                Interlocked.Add(ref s_controlBytes, c.BytesSent + c.BytesReceived);
                c.Dispose();
            }
            foreach (var p in processes)
            {
                // Only the workers this coordinator started, by their own handles.
                if (!p.HasExited)
                    p.Kill(entireProcessTree: true);
                p.Dispose();
            }
        }
    }

    static Process StartWorker(string mode, int rank, int n, int port, Options o, string security, string secret)
    {
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this executable");
        var psi = new ProcessStartInfo(exe) { UseShellExecute = false };
        // Under `dotnet GanCluster.DataPlane.Bench.dll` the process is the muxer; hand it the assembly again.
        if (Path.GetFileNameWithoutExtension(exe).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            psi.ArgumentList.Add(typeof(Coordinator).Assembly.Location);
        var inv = CultureInfo.InvariantCulture;
        foreach (var a in new[]
                 {
                     "--child", mode, "--rendezvous", $"127.0.0.1:{port}", "--rank", rank.ToString(inv), "--world", n.ToString(inv),
                     "--mb", o.Megabytes.ToString("R", inv), "--iters", o.Iterations.ToString(inv), "--warmup", o.Warmup.ToString(inv),
                     "--timeout", ((int)o.Timeout.TotalSeconds).ToString(inv), "--security", security,
                     "--busy-ms", o.BusyMs.ToString("R", inv), "--inline-kb", (o.InlineStepBytes / 1024).ToString(inv),
                     "--wire", o.Wires[0],
                 })
            psi.ArgumentList.Add(a);
        psi.Environment[Options.SecretVariable] = secret;
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start a worker process");
    }
}
