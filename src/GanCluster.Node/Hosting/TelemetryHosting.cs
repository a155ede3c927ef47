using Akka.Actor;
using Akka.Hosting;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using AkkaLogLevel = Akka.Event.LogLevel;

namespace GanCluster.Node.Hosting;

/// <summary>
/// Akka's log lines (ours from actors included) go through Microsoft.Extensions.Logging, so that node.json's
/// <c>Logging</c> section (levels per category, the console formatter: simple or json) applies to every line.
/// </summary>
public static class TelemetryHosting
{
    /// <summary>
    /// The console logger as node.json sets it (Logging:Console: formatter simple or json and its options). The simple
    /// formatter needs a trailing space after its timestamp; the JSON one gets the same format without it.
    /// </summary>
    public static ILoggingBuilder AddNodeConsole(this ILoggingBuilder logging)
    {
        logging.AddConsole();
        logging.Services.PostConfigure<Microsoft.Extensions.Logging.Console.JsonConsoleFormatterOptions>(o => o.TimestampFormat = o.TimestampFormat?.TrimEnd());
        return logging;
    }

    /// <summary>The categories whose lines travel on Akka's log bus: Akka's own and our actors'.</summary>
    static readonly string[] AkkaBusCategories = ["Akka", "GanCluster"];

    /// <summary>
    /// Akka's loggers replaced by <see cref="AkkaLogBridge"/> into the host's <see cref="ILoggerFactory"/>, at the level
    /// of the most verbose category that Akka's bus carries, so that lines every category filters out are not even produced.
    /// </summary>
    public static AkkaConfigurationBuilder WithNodeLogging(this AkkaConfigurationBuilder akka, ILoggerFactory loggers, IConfiguration configuration)
    {
        AkkaStdoutBridge.Factory = loggers;
        return
        akka.AddSetup(new AkkaLogBridge.FactorySetup(loggers))
            .AddHocon($"akka.stdout-logger-class = \"{typeof(AkkaStdoutBridge).AssemblyQualifiedName}\"", HoconAddMode.Prepend)
            .ConfigureLoggers(l =>
            {
                l.LogLevel = AkkaLevel(loggers, configuration);
                l.ClearLoggers();
                l.AddLogger<AkkaLogBridge>();
            });
    }

    /// <summary>
    /// The most verbose level that MEL enables for "Akka", "GanCluster" or any category configured under them
    /// (Logging:LogLevel:Akka.Remote, Logging:Console:LogLevel:GanCluster.Actors, …); Error when all are off.
    /// </summary>
    public static AkkaLogLevel AkkaLevel(ILoggerFactory loggers, IConfiguration configuration)
    {
        var configured = configuration.GetSection("Logging").AsEnumerable()
            .Select(kv => kv.Key.Split(':'))
            .Where(k => k.Length >= 3 && k[^2].Equals("LogLevel", StringComparison.OrdinalIgnoreCase))
            .Select(k => k[^1]);
        var categories = AkkaBusCategories.Concat(configured.Where(c => AkkaBusCategories.Any(p => c.StartsWith(p + ".", StringComparison.OrdinalIgnoreCase))));
        var enabled = categories.Select(loggers.CreateLogger).ToList();
        foreach (var (mel, akka) in new[] { (LogLevel.Debug, AkkaLogLevel.DebugLevel), (LogLevel.Information, AkkaLogLevel.InfoLevel), (LogLevel.Warning, AkkaLogLevel.WarningLevel) })
            if (enabled.Any(l => l.IsEnabled(mel))) return akka;
        return AkkaLogLevel.ErrorLevel;
    }
}

/// <summary>
/// Akka's logger actor that hands each line to Microsoft.Extensions.Logging with the class that logged it as the category
/// (Akka.Cluster.Cluster, GanCluster.Actors.Worker.WorkerActor, …), the formatted text as the message and the source
/// and thread as properties. Akka.Hosting 1.5.73's own LoggerFactoryLogger logs every line under one category
/// (Akka.Actor.ActorSystem) with Akka's text prefix, so node.json's per-category levels could not tell Akka's lines from ours.
/// </summary>
public sealed class AkkaLogBridge : ActorBase, Akka.Dispatch.IRequiresMessageQueue<Akka.Event.ILoggerMessageQueueSemantics>
{
    public sealed class FactorySetup(ILoggerFactory factory) : Akka.Actor.Setup.Setup
    {
        public ILoggerFactory Factory { get; } = factory;
    }

    readonly ILoggerFactory _factory = Context.System.Settings.Setup.Get<FactorySetup>().Value?.Factory
        ?? throw new InvalidOperationException("AkkaLogBridge needs its FactorySetup (TelemetryHosting.WithNodeLogging)");

    protected override bool Receive(object message)
    {
        switch (message)
        {
            case Akka.Event.InitializeLogger:
                Sender.Tell(new Akka.Event.LoggerInitialized());
                return true;
            case Akka.Event.LogEvent e:
                Write(_factory, e);
                return true;
            default:
                return false;
        }
    }

    /// <summary>One Akka line into <paramref name="factory"/> (which caches its loggers by category).</summary>
    public static void Write(ILoggerFactory factory, Akka.Event.LogEvent e)
    {
        var logger = factory.CreateLogger(Category(e));
        var level = PeerLeft(e) ? LogLevel.Information : e.LogLevel() switch
        {
            AkkaLogLevel.DebugLevel => LogLevel.Debug,
            AkkaLogLevel.InfoLevel => LogLevel.Information,
            AkkaLogLevel.WarningLevel => LogLevel.Warning,
            _ => LogLevel.Error,
        };
        if (logger.IsEnabled(level)) logger.Log(level, default, new Line(e), e.Cause, static (line, _) => line.Text);
    }

    /// <summary>
    /// A peer closed its connection (it left the cluster, or its process ended): Akka.Remote reports that as a failed
    /// association, an ERROR from the endpoint's supervisor with an EndpointDisassociatedException and a WARNING that the
    /// address is gated, although on a clean leave nothing failed. They are logged as information; what the departure
    /// means (left, unreachable, downed) is in the cluster's own lines.
    /// </summary>
    static bool PeerLeft(Akka.Event.LogEvent e) =>
        Disassociated(e.Cause) || (e.Message is Akka.Event.LogMessage m && m.Parameters().Any(p => Disassociated(p as Exception)));

    /// <summary>By name: the type is internal to Akka.Remote.</summary>
    static bool Disassociated(Exception? x) => x?.GetType().FullName == "Akka.Remote.EndpointDisassociatedException";

    /// <summary>
    /// The logging class's full name; lines logged by a named source instead (Akka's "remoting (akka://…)",
    /// "Cluster (akka://…)") get "Akka." and the source's first word: every one of them is Akka's own.
    /// </summary>
    static string Category(Akka.Event.LogEvent e)
    {
        if (e.LogClass != typeof(Akka.Event.DummyClassForStringSources)) return e.LogClass.FullName ?? e.LogClass.Name;
        var word = (e.LogSource ?? "").Split(' ', 2)[0];
        return "Akka." + (word.Length == 0 || word.Contains("://") ? "Actor" : word);
    }

    /// <summary>One line's structured state: the text, where it came from (actor path or source) and the thread.</summary>
    sealed class Line(Akka.Event.LogEvent e) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public string Text { get; } = e.Message?.ToString() ?? "";
        readonly KeyValuePair<string, object?>[] _items =
        [
            new("LogSource", e.LogSource),
            new("Thread", e.Thread.ManagedThreadId),
            new("{OriginalFormat}", e.Message?.ToString() ?? ""),
        ];
        public KeyValuePair<string, object?> this[int index] => _items[index];
        public int Count => _items.Length;
        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, object?>>)_items).GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
        public override string ToString() => Text;
    }
}

/// <summary>
/// Akka's logger for the moments its logger actors are not running (before they start, after they stop: Remoting's
/// last "shut down" lines), through the same factory (akka.stdout-logger-class). Akka creates it by reflection, so the
/// factory comes through a static set before the ActorSystem starts.
/// </summary>
public sealed class AkkaStdoutBridge : Akka.Event.MinimalLogger
{
    internal static ILoggerFactory? Factory;

    protected override void Log(object message)
    {
        if (message is Akka.Event.LogEvent e && Factory is { } factory) AkkaLogBridge.Write(factory, e);
        else Console.Error.WriteLine(message);
    }
}

/// <summary>
/// The Prometheus endpoint: OpenTelemetry's MeterProvider with its Prometheus HttpListener exporter, publishing the
/// <see cref="Actors.Telemetry.NodeMetrics"/> meter (counters as Prometheus counters with _total, histograms with their
/// unit as a suffix) plus this node's GPU and process memory gauges.
/// </summary>
public static class MetricsEndpoint
{
    /// <summary>
    /// Starts the endpoint at http://<see cref="NodeOptions.MetricsHost"/>:<see cref="NodeOptions.MetricsPort"/>/metrics,
    /// or returns null when Node:MetricsPort is 0. Throws <see cref="MetricsEndpointException"/> when it cannot listen.
    /// </summary>
    public static IDisposable? Start(NodeOptions options, IReadOnlyList<TorchSharp.torch.Device> devices)
    {
        if (options.MetricsPort == 0) return null;
        Gauges(devices);
        try
        {
            return OpenTelemetry.Sdk.CreateMeterProviderBuilder()
                .ConfigureResource(r => r.AddService("gancluster-node", serviceInstanceId: $"{options.EffectivePublicHost}:{options.Port}/{options.Roles}"))
                .AddMeter(Actors.Telemetry.NodeMetrics.MeterName)
                .AddPrometheusHttpListener(o =>
                {
                    o.Port = options.MetricsPort;
                    o.ScrapeEndpointPath = "/metrics";
                    if (options.MetricsHost != "0.0.0.0")
                    {
                        o.Host = options.MetricsHost;   // HttpListener binds that address only
                        return;
                    }
                    // Every interface is HttpListener's "+", which Host cannot express (the exporter builds a Uri from
                    // it); a "0.0.0.0" prefix would bind every interface but answer only requests addressed to "0.0.0.0".
                    o.ConfigureHttpListener = (_, listener) =>
                    {
                        listener.Prefixes.Clear();
                        listener.Prefixes.Add($"http://+:{options.MetricsPort}/metrics/");
                    };
                })
                .Build();
        }
        catch (Exception e) when (Inner<System.Net.HttpListenerException>(e) is { } listen)
        {
            throw new MetricsEndpointException($"Node:MetricsPort {options.MetricsPort} on Node:MetricsHost {options.MetricsHost}: cannot listen ({listen.Message}); " +
                                               "choose another port, or 0 for no endpoint");
        }
    }

    static T? Inner<T>(Exception e) where T : Exception
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is T t) return t;
        return null;
    }

    static bool _registered;

    /// <summary>
    /// Memory gauges, read at each scrape: used and total memory of each CUDA device of this node (cudaMemGetInfo: the
    /// whole device, every process on it; TorchSharp 0.107 has no torch.cuda.memory_allocated, so libtorch's own share
    /// cannot be told apart), and this process's working set (host memory, CPU workers included).
    /// </summary>
    static void Gauges(IReadOnlyList<TorchSharp.torch.Device> devices)
    {
        if (_registered) return;
        _registered = true;
        var meter = Actors.Telemetry.NodeMetrics.Meter;
        meter.CreateObservableGauge("gancluster.process.memory.working_set", () => Environment.WorkingSet, "By",
            "Host memory (working set) of this node's process; not GPU memory");
        var cuda = devices.Where(d => d.type == TorchSharp.DeviceType.CUDA).Select(d => d.index < 0 ? 0 : (int)d.index).Distinct().ToArray();
        if (cuda.Length == 0) return;
        IEnumerable<System.Diagnostics.Metrics.Measurement<long>> Read(bool used) =>
            cuda.Select(i => (Index: i, Info: Training.Native.TorchRuntime.CudaMemoryInfo(i)))
                .Where(x => x.Info is not null)
                .Select(x => new System.Diagnostics.Metrics.Measurement<long>(used ? x.Info!.Value.Total - x.Info.Value.Free : x.Info!.Value.Total,
                    new KeyValuePair<string, object?>("device", $"cuda:{x.Index}")));
        meter.CreateObservableGauge("gancluster.gpu.memory.used", () => Read(used: true), "By", "Memory in use on a CUDA device of this node (the whole device, every process)");
        meter.CreateObservableGauge("gancluster.gpu.memory.total", () => Read(used: false), "By", "Memory of a CUDA device of this node");
    }
}

/// <summary>The metrics endpoint could not listen: a user-fixable setting (exit 2).</summary>
public sealed class MetricsEndpointException(string message) : Exception(message);
