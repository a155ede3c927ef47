using System.Net;
using System.Net.Http.Json;
using System.Security.Authentication;
using System.Text.Json;
using System.Threading.Channels;
using GanCluster.Actors.Security;
using GanCluster.Protocol;

namespace GanCluster.Cli;

/// <summary>
/// The seed's HTTP API (docs/http-api.md) as an <see cref="IClusterLink"/>: each message becomes a request, and following
/// a run reads its server-sent events, turned back into the messages the Akka path delivers. Over HTTPS this client
/// presents the cluster's certificate and accepts only a server that presents it too (the pin; the host name is not
/// checked, so that <c>kubectl port-forward</c> to 127.0.0.1 works).
/// </summary>
sealed class HttpClusterLink : IClusterLink
{
    readonly HttpClient _http;
    readonly Uri _base;
    readonly TimeSpan _connectTimeout;
    readonly Channel<object> _inbox = Channel.CreateUnbounded<object>();
    readonly CancellationTokenSource _closing = new();
    // The run whose events are being read, if any (a repeated WatchRun for it is a no-op).
    string? _following;
    volatile string? _pinRefused;

    public HttpClusterLink(Uri address, TimeSpan connectTimeout, ClusterCredentials? credentials)
    {
        if (address.Scheme == Uri.UriSchemeHttps && credentials is null)
            throw new UsageException($"--cluster {address}: https needs the cluster's credentials (--credentials DIR): the seed is pinned to the cluster's " +
                                     "certificate; --insecure works only with http://127.0.0.1:PORT (a seed started with Node:Insecure=true)");
        _base = address;
        _connectTimeout = connectTimeout;
        Receptionist = address.GetLeftPart(UriPartial.Authority);
        var handler = new SocketsHttpHandler { ConnectTimeout = connectTimeout, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) };
        if (credentials is not null)
        {
            handler.SslOptions.ClientCertificates = [credentials.Certificate];
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => credentials.Certificate;
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                if (credentials.IsClusterCertificate(certificate)) return true;
                _pinRefused = certificate is null ? "it presented no certificate" : $"its certificate ({certificate.Subject}) is not this cluster's";
                return false;
            };
        }
        _http = new HttpClient(handler) { BaseAddress = address, Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>https://host:port or http://host:port (nothing after it); a usage error otherwise.</summary>
    public static Uri ParseAddress(string address)
    {
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http") || uri.AbsolutePath != "/" || uri.Query != "")
            throw new UsageException($"--cluster {address}: expected https://host:port (the seed's Node:HttpPort), http://127.0.0.1:port (an insecure seed), or host:port (Akka)");
        return new Uri(uri.GetLeftPart(UriPartial.Authority) + "/");
    }

    public string Receptionist { get; }

    public void Send(IGanClusterMessage message)
    {
        switch (message)
        {
            case RunProtocol.GetStatus:
                Request(async ct => (await Get<HttpApi.Status>("api/status", ct)).ToProtocol());
                break;
            case RunProtocol.ListRuns:
                Request(async ct =>
                {
                    var listed = await Get<HttpApi.RunsListed>("api/runs", ct);
                    return new RunProtocol.RunsListed(listed.Runs.Select(r => r.ToProtocol()).ToArray(), listed.Omitted);
                });
                break;
            case RunProtocol.SubmitRun s:
                Request(async ct =>
                {
                    using var content = new StringContent(s.SpecJson, System.Text.Encoding.UTF8, "application/json");
                    using var response = await _http.PostAsync("api/runs", content, ct);
                    if (response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.Conflict or HttpStatusCode.RequestEntityTooLarge)
                    {
                        var error = await ErrorOf(response, ct);
                        return new RunProtocol.SubmitNack(error.Error, error.Errors ?? []);
                    }
                    var ack = await Read<HttpApi.Submitted>(response, ct);
                    // The ack first, then the run's events.
                    _inbox.Writer.TryWrite(new RunProtocol.SubmitAck(ack.RunId, ack.Workers, ack.Output));
                    if (s.Watch) Follow(ack.RunId);
                    return null;
                });
                break;
            case RunProtocol.CancelRun c:
                Request(async ct =>
                {
                    using var response = await _http.PostAsync($"api/runs/{Uri.EscapeDataString(c.RunId)}/cancel", null, ct);
                    if (response.StatusCode == HttpStatusCode.Conflict) return new RunProtocol.CancelNack(c.RunId, (await ErrorOf(response, ct)).Error);
                    return new RunProtocol.CancelAck(c.RunId, (await Read<HttpApi.Cancelled>(response, ct)).Message);
                });
                break;
            case RunProtocol.WatchRun w:
                if (_following != w.RunId) Follow(w.RunId);
                break;
            default:
                throw new InvalidOperationException($"{message.GetType().Name} has no HTTP route");
        }
    }

    /// <summary>Runs a request in the background; its answer, or why it failed, goes to the inbox in order.</summary>
    void Request(Func<CancellationToken, Task<object?>> call) => Task.Run(async () =>
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_closing.Token);
        timeout.CancelAfter(_connectTimeout + TimeSpan.FromSeconds(30));   // the seed asks the coordinator for up to 30 s
        try
        {
            if (await call(timeout.Token) is { } answer) _inbox.Writer.TryWrite(answer);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or HttpFailure)
        {
            _inbox.Writer.TryWrite(new Failed(Explain(e)));
        }
    });

    /// <summary>Reads a run's events into the inbox as the Akka path's messages; a stream that breaks off is lost contact.</summary>
    void Follow(string runId)
    {
        _following = runId;
        _ = Task.Run(async () =>
        {
            var ended = false;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"api/runs/{Uri.EscapeDataString(runId)}/events");
                request.Headers.Accept.ParseAdd("text/event-stream");
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, _closing.Token);
                if (response.StatusCode == HttpStatusCode.NotFound)
                {
                    _inbox.Writer.TryWrite(new RunProtocol.WatchNack(runId, (await ErrorOf(response, _closing.Token)).Error));
                    ended = true;
                    return;
                }
                await Check(response, _closing.Token);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(_closing.Token));
                string? name = null;
                var data = new System.Text.StringBuilder();
                while (await reader.ReadLineAsync(_closing.Token) is { } line)
                {
                    if (line.StartsWith("event:", StringComparison.Ordinal)) name = line[6..].Trim();
                    else if (line.StartsWith("data:", StringComparison.Ordinal)) data.Append(line[5..].TrimStart());
                    else if (line.Length == 0 && name is not null)
                    {
                        var message = Event(name, data.ToString());
                        (name, data) = (null, data.Clear());
                        if (message is null) continue;
                        _inbox.Writer.TryWrite(message);
                        if (message is RunProtocol.RunEnded or RunProtocol.WatchNack)
                        {
                            ended = true;
                            return;
                        }
                    }
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException or JsonException or HttpFailure or OperationCanceledException)
            {
                if (_closing.IsCancellationRequested) return;
            }
            finally
            {
                if (_following == runId) _following = null;
            }
            if (ended || _closing.IsCancellationRequested) return;
            // As the ClusterClient: contact counts as lost after the connect timeout without an answer.
            try { await Task.Delay(_connectTimeout, _closing.Token); } catch (OperationCanceledException) { return; }
            _inbox.Writer.TryWrite(new ClusterConnection.ContactLost());
        });
    }

    static object? Event(string name, string json) => name switch
    {
        HttpApi.Events.State => JsonSerializer.Deserialize<HttpApi.StateEvent>(json, HttpApi.Json) is { } s ? new RunProtocol.WatchAck(s.RunId, s.State, s.Iteration) : null,
        HttpApi.Events.Progress => JsonSerializer.Deserialize<RunProtocol.ProgressReported>(json, HttpApi.Json),
        HttpApi.Events.Note => JsonSerializer.Deserialize<RunProtocol.RunNoted>(json, HttpApi.Json),
        HttpApi.Events.Ended => JsonSerializer.Deserialize<RunProtocol.RunEnded>(json, HttpApi.Json),
        HttpApi.Events.Error => JsonSerializer.Deserialize<HttpApi.ApiError>(json, HttpApi.Json) is { } e ? new RunProtocol.WatchNack("", e.Error) : null,
        _ => null,   // a newer server's event
    };

    public object First()
    {
        var m = Take(_connectTimeout + TimeSpan.FromSeconds(30));
        return m switch
        {
            Failed f => throw new UsageException(f.Why),
            null or ClusterConnection.ContactLost => throw new UsageException($"the seed's HTTP API at {Receptionist} did not answer in time"),
            _ => m,
        };
    }

    // A request that failed after the first answer (while following) is lost contact.
    public object? Next(TimeSpan timeout)
    {
        var m = Take(timeout);
        return m is Failed ? new ClusterConnection.ContactLost() : m;
    }

    object? Take(TimeSpan timeout)
    {
        using var cts = timeout == Timeout.InfiniteTimeSpan ? new CancellationTokenSource() : new CancellationTokenSource(timeout);
        try { return _inbox.Reader.ReadAsync(cts.Token).AsTask().GetAwaiter().GetResult(); }
        catch (OperationCanceledException) { return null; }
    }

    public void Reconnect() { }

    // ---- files (download) ----

    public HttpApi.FileEntry[] Files(string run) =>
        Sync(ct => Get<HttpApi.FilesListed>($"api/runs/{Uri.EscapeDataString(run)}/files", ct)).Files;

    /// <summary>Downloads one file of a run to <paramref name="target"/> (through a temporary file), reporting bytes so far.</summary>
    public void Download(string run, string path, string target, Action<long>? progress)
    {
        Sync(async ct =>
        {
            var url = $"api/runs/{Uri.EscapeDataString(run)}/files/{string.Join('/', path.Split('/').Select(Uri.EscapeDataString))}";
            using var response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, ct);
            await Check(response, ct);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(target))!);
            var partial = target + ".part";
            await using (var file = File.Create(partial))
            await using (var body = await response.Content.ReadAsStreamAsync(ct))
            {
                var buffer = new byte[256 * 1024];
                long total = 0;
                int read;
                while ((read = await body.ReadAsync(buffer, ct)) > 0)
                {
                    await file.WriteAsync(buffer.AsMemory(0, read), ct);
                    total += read;
                    progress?.Invoke(total);
                }
            }
            File.Move(partial, target, overwrite: true);
            return true;
        });
    }

    /// <summary>A request made synchronously, failures as usage errors (for the download command).</summary>
    T Sync<T>(Func<CancellationToken, Task<T>> call)
    {
        try
        {
            return call(_closing.Token).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or HttpFailure or IOException)
        {
            throw new UsageException(Explain(e));
        }
    }

    // ---- helpers ----

    async Task<T> Get<T>(string path, CancellationToken ct)
    {
        using var response = await _http.GetAsync(path, ct);
        return await Read<T>(response, ct);
    }

    static async Task<T> Read<T>(HttpResponseMessage response, CancellationToken ct)
    {
        await Check(response, ct);
        return await response.Content.ReadFromJsonAsync<T>(HttpApi.Json, ct) ?? throw new JsonException("empty answer");
    }

    static async Task Check(HttpResponseMessage response, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode) return;
        var error = await ErrorOf(response, ct);
        throw new HttpFailure(response.StatusCode, error.Error);
    }

    static async Task<HttpApi.ApiError> ErrorOf(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            return await response.Content.ReadFromJsonAsync<HttpApi.ApiError>(HttpApi.Json, ct) ?? new HttpApi.ApiError(response.ReasonPhrase ?? "");
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            return new HttpApi.ApiError($"{(int)response.StatusCode} {response.ReasonPhrase}");
        }
    }

    string Explain(Exception e)
    {
        var where = $"the seed's HTTP API at {Receptionist}";
        return e switch
        {
            HttpFailure { Status: HttpStatusCode.Unauthorized } => $"{where} refused these credentials (401): they are not this cluster's",
            HttpFailure f => $"{where} answered {(int)f.Status}: {f.Message}",
            OperationCanceledException => $"{where} did not answer within {(_connectTimeout + TimeSpan.FromSeconds(30)).TotalSeconds:F0} s",
            HttpRequestException { InnerException: AuthenticationException } when _pinRefused is { } why =>
                $"could not reach {where}: the seed's certificate is not the one these credentials pin ({why}): they were made for another cluster",
            HttpRequestException { HttpRequestError: HttpRequestError.SecureConnectionError } =>
                $"could not reach {where}: the TLS handshake failed ({e.InnerException?.Message ?? e.Message}); is it a seed with Node:HttpPort, and https (http:// for an insecure seed)?",
            HttpRequestException h => $"could not reach {where}: {h.Message} (is a seed running there with Node:HttpPort set? for a cluster on Kubernetes: kubectl port-forward svc/gancluster-seed 8080)",
            _ => $"{where}: {e.Message}",
        };
    }

    public void Dispose()
    {
        _closing.Cancel();   // not disposed: background reads may still look at it
        _http.Dispose();
    }

    /// <summary>A request that failed, in the inbox: <see cref="First"/> reports it.</summary>
    sealed record Failed(string Why);

    sealed class HttpFailure(HttpStatusCode status, string message) : Exception(message)
    {
        public HttpStatusCode Status { get; } = status;
    }
}
