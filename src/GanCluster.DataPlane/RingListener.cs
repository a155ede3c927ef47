using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane;

/// <summary>
/// The TCP listener through which a rank accepts the connection from its ring predecessor.
/// Started before the peer list is published, so the port can be advertised; it can serve several
/// successive <see cref="RingAllReduce.Connect"/> calls (one at a time), e.g. after a ring is rebuilt.
/// </summary>
public sealed class RingListener : IDisposable
{
    private int _inUse;

    private RingListener(Socket socket)
    {
        Socket = socket;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public IPEndPoint LocalEndPoint { get; }

    public int Port => LocalEndPoint.Port;

    internal Socket Socket { get; }

    public static RingListener Start(IPAddress bind, int port = 0)
    {
        ArgumentNullException.ThrowIfNull(bind);
        var socket = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // Accepted sockets inherit the buffer sizes; they must be set before listen for TCP window scaling.
            SocketTuning.ApplyBuffers(socket);
            socket.Bind(new IPEndPoint(bind, port));
            socket.Listen(64);
            return new RingListener(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    internal void Acquire()
    {
        if (Interlocked.Exchange(ref _inUse, 1) != 0)
            throw new InvalidOperationException("Another RingAllReduce.Connect is already using this listener.");
    }

    internal void Release() => Volatile.Write(ref _inUse, 0);

    public void Dispose() => Socket.Dispose();
}
