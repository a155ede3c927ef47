namespace GanCluster.Cluster.Tests;

/// <summary>A real cluster on 127.0.0.1: one seed and two CPU workers, shared by the tests of a class.</summary>
public sealed class LiveCluster : IDisposable
{
    readonly NodeProcesses _nodes = new();
    readonly List<int> _workers = [];

    public LiveCluster()
    {
        Port = NodeProcesses.FreePort();
        _nodes.StartSeed(Port);
        for (var i = 0; i < 2; i++) _workers.Add(_nodes.StartWorker(Port));
        _nodes.WaitForWorkers(Port, 2);
    }

    public string Root => _nodes.Root;
    /// <summary>The seed's Node:RunsRoot: where a submitted relative output lands.</summary>
    public string Runs => _nodes.RunsRoot;
    public int Port { get; }
    public string Address => $"127.0.0.1:{Port}";

    public string AllLogs() => _nodes.AllLogs();

    public IEnumerable<string> WorkerLogs() => _workers.Select(_nodes.Log);

    public IReadOnlyList<int> Workers => _workers;

    /// <inheritdoc cref="NodeProcesses.WaitForLog"/>
    public string WaitForLog(int pid, string text) => _nodes.WaitForLog(pid, text);

    public static int FreePort() => NodeProcesses.FreePort();

    public void Dispose() => _nodes.Dispose();
}
