using System.Net.Sockets;
using System.Text;

namespace GanCluster.DataPlane.Bench;

/// <summary>
/// One line-based control connection between the coordinator and a worker. It carries addresses and results only,
/// and counts its bytes so that the coordinator can show it never touched gradient data.
/// </summary>
sealed class ControlChannel : IDisposable
{
    readonly Socket _socket;
    readonly StreamReader _reader;
    readonly StreamWriter _writer;

    public ControlChannel(Socket socket, TimeSpan timeout)
    {
        _socket = socket;
        socket.NoDelay = true;
        socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
        socket.SendTimeout = (int)timeout.TotalMilliseconds;
        var stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(stream, new UTF8Encoding(false));
        _writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
    }

    public long BytesSent { get; private set; }
    public long BytesReceived { get; private set; }

    public void Send(string line)
    {
        _writer.WriteLine(line);
        BytesSent += Encoding.UTF8.GetByteCount(line) + 1;
    }

    public string Receive(string expectedVerb)
    {
        var line = _reader.ReadLine() ?? throw new IOException($"control connection closed while waiting for {expectedVerb}");
        BytesReceived += Encoding.UTF8.GetByteCount(line) + 1;
        if (line.StartsWith("ERROR ", StringComparison.Ordinal))
            throw new IOException($"worker reported: {line[6..]}");
        if (line == expectedVerb)
            return "";
        if (!line.StartsWith(expectedVerb + " ", StringComparison.Ordinal))
            throw new IOException($"expected {expectedVerb}, got '{line}'");
        return line[(expectedVerb.Length + 1)..];
    }

    public void Dispose()
    {
        _reader.Dispose();
        _writer.Dispose();
        _socket.Dispose();
    }
}
