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
    int _inUse;

    RingListener(Socket socket, int socketBufferBytes)
    {
        Socket = socket;
        SocketBufferBytes = socketBufferBytes;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public IPEndPoint LocalEndPoint { get; }

    public int Port => LocalEndPoint.Port;

    /// <summary>SO_SNDBUF/SO_RCVBUF of the ring's data sockets; 0 = the kernel's autotuning.</summary>
    public int SocketBufferBytes { get; }

    internal Socket Socket { get; }

    /// <param name="bind">Address to listen on.</param>
    /// <param name="port">0 lets the OS pick a free port; read it back from <see cref="Port"/>.</param>
    /// <param name="socketBufferBytes">
    /// Socket buffer size for both data connections of rings built on this listener. 0 (the default) keeps Linux TCP
    /// autotuning, which grows the buffers to tcp_rmem/tcp_wmem's maximum (megabytes) as the connection needs; a
    /// fixed size turns autotuning off and is capped by net.core.rmem_max/wmem_max.
    /// </param>
    public static RingListener Start(IPAddress bind, int port = 0, int socketBufferBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(bind);
        ArgumentOutOfRangeException.ThrowIfNegative(socketBufferBytes);
        var socket = new Socket(bind.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // Accepted sockets inherit the buffer sizes; they must be set before listen for TCP window scaling.
            SocketTuning.ApplyBuffers(socket, socketBufferBytes);
            socket.Bind(new IPEndPoint(bind, port));
            socket.Listen(64);
            return new RingListener(socket, socketBufferBytes);
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
