using System.Net;
using System.Net.Sockets;

namespace GanCluster.DataPlane.Tests;

/// <summary>
/// A man in the middle on 127.0.0.1: forwards every connection to a target port, records what the client sends
/// (upstream), and can flip one upstream byte at a given offset of each connection.
/// </summary>
sealed class TcpProxy : IDisposable
{
    readonly Socket _listener;
    readonly int _targetPort;
    readonly long _flipAt;
    readonly List<Socket> _sockets = [];
    readonly List<MemoryStream> _upstream = [];
    readonly Thread _acceptor;
    volatile bool _disposed;

    public TcpProxy(int targetPort, long flipAt = -1)
    {
        _targetPort = targetPort;
        _flipAt = flipAt;
        _listener = FakePeer.Listen();
        _acceptor = new Thread(AcceptLoop) { IsBackground = true, Name = "proxy-accept" };
        _acceptor.Start();
    }

    public int Port => FakePeer.Port(_listener);

    /// <summary>What each client sent, in accept order.</summary>
    public byte[][] Upstream()
    {
        lock (_sockets)
            return _upstream.Select(m => m.ToArray()).ToArray();
    }

    void AcceptLoop()
    {
        while (!_disposed)
        {
            Socket client, server;
            try
            {
                client = _listener.Accept();
                server = FakePeer.ConnectTo(_targetPort);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                continue;
            }
            var record = new MemoryStream();
            lock (_sockets)
            {
                _sockets.Add(client);
                _sockets.Add(server);
                _upstream.Add(record);
            }
            Pump(client, server, record, _flipAt);
            Pump(server, client, null, -1);
        }
    }

    void Pump(Socket from, Socket to, MemoryStream? record, long flipAt)
    {
        new Thread(() =>
        {
            var buffer = new byte[64 * 1024];
            long offset = 0;
            try
            {
                while (true)
                {
                    var n = from.Receive(buffer);
                    if (n == 0)
                        break;
                    if (flipAt >= offset && flipAt < offset + n)
                        buffer[flipAt - offset] ^= 0x01;
                    if (record != null)
                        lock (_sockets)
                            record.Write(buffer, 0, n);
                    offset += n;
                    Wire.SendAll(to, buffer.AsSpan(0, n));
                }
                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // One side is gone: take the other down too.
                try
                {
                    to.Shutdown(SocketShutdown.Both);
                    from.Shutdown(SocketShutdown.Both);
                }
                catch (Exception inner) when (inner is SocketException or ObjectDisposedException)
                {
                }
            }
        }) { IsBackground = true, Name = "proxy-pump" }.Start();
    }

    public void Dispose()
    {
        _disposed = true;
        _listener.Dispose();
        lock (_sockets)
            foreach (var s in _sockets)
                s.Dispose();
    }
}
