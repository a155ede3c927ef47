using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace GanCluster.Tests.Shared;

/// <summary>
/// Headless Chromium driven over the Chrome DevTools Protocol: one WebSocket to the browser, one page target attached
/// in flat mode (its commands carry the session id). Enough of the protocol for a test: navigate, evaluate script,
/// type text, take a screenshot; the page's console lines, uncaught exceptions and every request it made are kept.
/// </summary>
public sealed class DevToolsBrowser : IAsyncDisposable
{
    static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    readonly Process _process;
    readonly string _profile;
    readonly ClientWebSocket _socket = new();
    readonly SemaphoreSlim _sending = new(1, 1);
    readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> _pending = new();
    readonly ConcurrentQueue<string> _log = new();
    readonly ConcurrentQueue<string> _requests = new();
    readonly CancellationTokenSource _stop = new();
    readonly StringBuilder _stderr = new();
    Task _receiver = Task.CompletedTask;
    string? _session;
    int _nextId;

    DevToolsBrowser(Process process, string profile)
    {
        _process = process;
        _profile = profile;
    }

    /// <summary>The page's console lines, uncaught exceptions and failed requests, in order (for failure messages).</summary>
    public IReadOnlyList<string> Log => [.. _log];

    /// <summary>Every URL the page requested (documents, scripts, styles, images, fetches, event streams).</summary>
    public IReadOnlyList<string> Requests => [.. _requests];

    /// <summary>
    /// Starts chromium with a throw-away profile and a <paramref name="width"/>×<paramref name="height"/> viewport, and
    /// opens a blank page. Certificate errors are ignored: the seed serves the cluster's self-signed certificate.
    /// </summary>
    public static async Task<DevToolsBrowser> StartAsync(int width, int height)
    {
        var exe = HeadlessChromium.Require();
        var profile = Path.Combine(Path.GetTempPath(), "gancluster-chromium-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(profile);
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in HeadlessChromium.Flags.Concat([
                     "--ignore-certificate-errors", "--remote-debugging-port=0", $"--user-data-dir={profile}", $"--window-size={width},{height}", "about:blank"]))
            psi.ArgumentList.Add(a);
        var browser = new DevToolsBrowser(Process.Start(psi)!, profile);
        try
        {
            await browser.ConnectAsync(width, height);
            return browser;
        }
        catch
        {
            await browser.DisposeAsync();
            throw;
        }
    }

    async Task ConnectAsync(int width, int height)
    {
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is { } line) lock (_stderr) _stderr.AppendLine(line); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        // Chromium writes the port it chose and the browser target's path to DevToolsActivePort once it listens.
        var portFile = Path.Combine(_profile, "DevToolsActivePort");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        string[] lines = [];
        while (lines.Length < 2)
        {
            if (_process.HasExited) throw new InvalidOperationException($"chromium exited with {_process.ExitCode} before it listened:\n{StdErr}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"chromium wrote no {portFile} within 60 s:\n{StdErr}");
            try { lines = File.Exists(portFile) ? File.ReadAllLines(portFile) : []; }
            catch (IOException) { lines = []; }                                  // being written
            if (lines.Length < 2) await Task.Delay(100);
        }
        await _socket.ConnectAsync(new Uri($"ws://127.0.0.1:{lines[0].Trim()}{lines[1].Trim()}"), _stop.Token);
        _receiver = Task.Run(ReceiveLoop);

        var target = await SendAsync("Target.createTarget", new JsonObject { ["url"] = "about:blank" }, toPage: false);
        var attached = await SendAsync("Target.attachToTarget",
            new JsonObject { ["targetId"] = target.GetProperty("targetId").GetString(), ["flatten"] = true }, toPage: false);
        _session = attached.GetProperty("sessionId").GetString();
        foreach (var domain in new[] { "Page.enable", "Runtime.enable", "Network.enable" }) await SendAsync(domain);
        await SendAsync("Emulation.setDeviceMetricsOverride",
            new JsonObject { ["width"] = width, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false });
    }

    string StdErr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>Sends one command (to the page unless <paramref name="toPage"/> is false) and returns its result.</summary>
    public async Task<JsonElement> SendAsync(string method, JsonObject? parameters = null, bool toPage = true)
    {
        var id = Interlocked.Increment(ref _nextId);
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        if (toPage) message["sessionId"] = _session ?? throw new InvalidOperationException("no page attached");
        var reply = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = reply;
        var bytes = Encoding.UTF8.GetBytes(message.ToJsonString());
        await _sending.WaitAsync();   // ClientWebSocket allows one send at a time
        try { await _socket.SendAsync(bytes, WebSocketMessageType.Text, true, _stop.Token); }
        finally { _sending.Release(); }
        var done = await Task.WhenAny(reply.Task, Task.Delay(CommandTimeout));
        _pending.TryRemove(id, out _);
        if (done != reply.Task) throw new TimeoutException($"DevTools command {method} got no answer within {CommandTimeout.TotalSeconds:F0} s");
        return await reply.Task;
    }

    async Task ReceiveLoop()
    {
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        try
        {
            while (_socket.State == WebSocketState.Open)
            {
                var r = await _socket.ReceiveAsync(buffer, _stop.Token);
                if (r.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                Dispatch(JsonDocument.Parse(message.ToArray()).RootElement.Clone());
                message.SetLength(0);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException) { }
        foreach (var p in _pending.Values) p.TrySetException(new InvalidOperationException($"the DevTools connection closed:\n{StdErr}"));
    }

    void Dispatch(JsonElement m)
    {
        if (m.TryGetProperty("id", out var idProperty))
        {
            if (!_pending.TryGetValue(idProperty.GetInt32(), out var reply)) return;
            if (m.TryGetProperty("error", out var error)) reply.TrySetException(new InvalidOperationException($"DevTools: {error}"));
            else reply.TrySetResult(m.GetProperty("result"));
            return;
        }
        if (!m.TryGetProperty("method", out var method) || !m.TryGetProperty("params", out var p)) return;
        switch (method.GetString())
        {
            case "Runtime.consoleAPICalled":
                var args = p.GetProperty("args").EnumerateArray()
                    .Select(a => a.TryGetProperty("value", out var v) ? v.ToString() : a.TryGetProperty("description", out var d) ? d.GetString() : "?");
                _log.Enqueue($"console.{p.GetProperty("type").GetString()}: {string.Join(' ', args)}");
                break;
            case "Runtime.exceptionThrown":
                var details = p.GetProperty("exceptionDetails");
                var text = details.TryGetProperty("exception", out var ex) && ex.TryGetProperty("description", out var desc) ? desc.GetString() : details.GetProperty("text").GetString();
                _log.Enqueue($"uncaught: {text}");
                break;
            case "Network.requestWillBeSent":
                _requests.Enqueue(p.GetProperty("request").GetProperty("url").GetString() ?? "");
                break;
            case "Network.loadingFailed":
                if (!p.TryGetProperty("canceled", out var canceled) || !canceled.GetBoolean())
                    _log.Enqueue($"request failed: {p.GetProperty("errorText").GetString()}");
                break;
        }
    }

    /// <summary>Opens <paramref name="url"/> in the page and waits until it has loaded.</summary>
    public async Task NavigateAsync(string url)
    {
        var r = await SendAsync("Page.navigate", new JsonObject { ["url"] = url });
        if (r.TryGetProperty("errorText", out var error)) throw new InvalidOperationException($"navigating to {url}: {error.GetString()}");
        await WaitForAsync("document.readyState === 'complete' && location.href !== 'about:blank'", TimeSpan.FromSeconds(60), $"{url} loaded");
    }

    /// <summary>The value of a script expression in the page (promises awaited); a script error throws.</summary>
    public async Task<JsonElement> EvaluateAsync(string expression)
    {
        var r = await SendAsync("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true });
        if (r.TryGetProperty("exceptionDetails", out var details))
        {
            var text = details.TryGetProperty("exception", out var ex) && ex.TryGetProperty("description", out var d) ? d.GetString() : details.GetProperty("text").GetString();
            throw new InvalidOperationException($"script `{expression}` failed: {text}");
        }
        return r.GetProperty("result").TryGetProperty("value", out var value) ? value.Clone() : default;
    }

    /// <summary>
    /// Evaluates <paramref name="expression"/> until it is truthy and returns that value; a page being reloaded (no
    /// context to evaluate in) counts as not yet. Fails after <paramref name="timeout"/> with the last value and the page's log.
    /// </summary>
    public async Task<JsonElement> WaitForAsync(string expression, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        var last = "(not evaluated)";
        while (true)
        {
            try
            {
                var value = await EvaluateAsync(expression);
                if (Truthy(value)) return value;
                last = value.ValueKind == JsonValueKind.Undefined ? "undefined" : value.GetRawText();
            }
            catch (InvalidOperationException e) { last = e.Message; }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{what}: not within {timeout.TotalSeconds:F0} s (`{expression}` last gave {last})\npage log:\n{string.Join('\n', Log)}");
            await Task.Delay(250);
        }
    }

    static bool Truthy(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.True or JsonValueKind.Object or JsonValueKind.Array => true,
        JsonValueKind.Number => v.GetDouble() != 0,
        JsonValueKind.String => v.GetString()!.Length > 0,
        _ => false,
    };

    /// <summary>Types <paramref name="text"/> into the focused element, as a keyboard would.</summary>
    public Task InsertTextAsync(string text) => SendAsync("Input.insertText", new JsonObject { ["text"] = text });

    /// <summary>Writes a PNG of the viewport to <paramref name="path"/>.</summary>
    public async Task ScreenshotAsync(string path)
    {
        var r = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        await File.WriteAllBytesAsync(path, Convert.FromBase64String(r.GetProperty("data").GetString()!));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_socket.State == WebSocketState.Open)
                await SendAsync("Browser.close", toPage: false).WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or WebSocketException) { }
        if (!_process.WaitForExit(10_000)) _process.Kill(entireProcessTree: true);
        _stop.Cancel();
        try { await _receiver.WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (TimeoutException) { }
        _socket.Dispose();
        _process.Dispose();
        _stop.Dispose();
        _sending.Dispose();
        try { Directory.Delete(_profile, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
