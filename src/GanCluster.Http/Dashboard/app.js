'use strict';
// The GanCluster dashboard: polls the seed's HTTP API and follows the active run's event stream.
// Every string that comes from the API goes into the page as text (textContent), never as HTML.
(() => {
  const $ = id => document.getElementById(id);
  const STATUS_MS = 2000, RUNS_MS = 10000, DETAIL_MS = 8000, MAX_NOTES = 50;
  const LOSSES = [{ key: 'lossD', label: 'loss D', color: '#d9480f' }, { key: 'lossG', label: 'loss G', color: '#1c7ed6' }];
  const OUTPUTS = [{ key: 'dReal', label: 'D(x)', color: '#2f9e44' }, { key: 'dFake', label: 'D(G(z))', color: '#ae3ec9' }];
  // Quality columns of metrics.csv as the API names them.
  const SCORES = [
    { keys: ['fid'], label: 'FD', digits: 2 },
    { keys: ['classKl'], label: 'class KL', digits: 3 },
    { keys: ['confidentShare'], label: 'confident', percent: true },
    { keys: ['modes'], label: 'modes', digits: 0 },
    { keys: ['highQuality'], label: 'high quality', percent: true },
  ];

  const ui = {
    status: null,
    runs: [],
    activeRunId: null,      // the run the cluster drives now
    liveIteration: 0,       // the active run's newest iteration (status polls and progress events)
    events: null,           // EventSource of the active run
    view: null,             // the run shown in the charts: { key, name, runId } (runId only for the active run)
    pinned: false,          // the user picked a run in the table: do not switch to the active one
    rows: new Map(),        // iteration -> interval row of the viewed run (history, then live points)
    quality: [],            // quality rows of the viewed run
    sampleUrl: null,
    stopped: false,         // the login box is up: no polling
    drawPending: false,
  };

  class Unauthorized extends Error {}

  // ---- API -------------------------------------------------------------------------------------------------------
  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, options));
    if (response.status === 401) {
      showLogin();
      throw new Unauthorized(path);
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { const body = await response.json(); if (body && body.error) message += `: ${body.error}`; } catch { /* not JSON */ }
      const error = new Error(`${path}: ${message}`);
      error.status = response.status;
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  // A run folder is addressed by its path under the seed's runs root (folder); name is its spec's name.
  const runKey = run => run.folder ?? run.name;
  const runPath = key => `api/runs/${encodeURIComponent(key)}`;
  const filePath = (key, path) => `${runPath(key)}/files/${path.split('/').map(encodeURIComponent).join('/')}`;

  function setConnection(text, bad) {
    const c = $('connection');
    c.textContent = text;
    c.classList.toggle('error', !!bad);
  }

  // ---- DOM helpers ----------------------------------------------------------------------------------------------
  function el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  const num = v => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  function fmt(v, digits) {
    const n = num(v);
    if (n === null) return '–';
    if (digits === 0) return String(Math.round(n));
    if (digits !== undefined) return n.toFixed(digits);
    return Math.abs(n) >= 1000 || (Math.abs(n) < 0.01 && n !== 0) ? n.toExponential(2) : n.toPrecision(4);
  }
  const pct = v => (num(v) === null ? '–' : `${(v * 100).toFixed(1)} %`);
  function when(utc) {
    const d = new Date(utc);
    return Number.isNaN(d.getTime()) || d.getUTCFullYear() < 2000 ? '–' : d.toLocaleString();
  }

  // ---- Status ---------------------------------------------------------------------------------------------------
  async function refreshStatus() {
    const s = await api('api/status');
    ui.status = s;
    $('logout').hidden = false;
    setConnection(`updated ${new Date().toLocaleTimeString()}`);
    const stateName = String(s.state ?? '?');
    const badge = $('cluster-state');
    badge.textContent = stateName;
    badge.dataset.state = stateName.toLowerCase();
    $('worker-count').textContent = String(s.workers ?? 0);
    const err = $('last-error');
    err.hidden = !s.lastError;
    err.textContent = s.lastError ? `last error: ${s.lastError}` : '';
    renderWorkers(s.workerList ?? []);

    const runId = s.runId || null;
    if (runId !== ui.activeRunId) {
      ui.activeRunId = runId;
      ui.liveIteration = 0;
      closeEvents();
      if (runId) await refreshRuns();   // the new run's folder shows up in the listing
    }
    if (runId) {
      ui.liveIteration = Math.max(ui.liveIteration, num(s.iteration) ?? 0);
      if (!ui.events) openEvents(runId);
      if (!ui.pinned && (!ui.view || ui.view.runId !== runId)) {
        const run = runOf(runId);
        if (run) selectRun(run, runId);
      }
    } else if (!ui.view && ui.runs.length > 0) {
      selectRun(ui.runs[0], null);   // idle: show the newest run
    }
    renderHeader(num(s.total) ?? 0);
  }

  function renderHeader(total) {
    $('run-id').textContent = ui.activeRunId ?? 'none';
    const it = $('iteration');
    it.textContent = ui.activeRunId ? String(ui.liveIteration) : '–';
    it.dataset.iteration = String(ui.activeRunId ? ui.liveIteration : 0);
    if (total > 0) $('total').textContent = String(total);
    else if (!ui.activeRunId) $('total').textContent = '–';
    const bar = $('progress');
    const t = total > 0 ? total : Number($('total').textContent) || 0;
    bar.max = t > 0 ? t : 1;
    bar.value = t > 0 ? Math.min(ui.liveIteration, t) : 0;
  }

  function renderWorkers(list) {
    const body = $('workers').tBodies[0];
    const workers = [...list].sort((a, b) => rankKey(a.rank) - rankKey(b.rank) || String(a.workerId).localeCompare(String(b.workerId)));
    body.replaceChildren(...workers.map(w => {
      const rank = num(w.rank) ?? -1;
      const tr = el('tr', null, { 'data-worker-id': w.workerId ?? '', 'data-rank': rank });
      tr.append(el('td', w.workerId ?? '?', { class: 'worker-id' }), el('td', w.device ?? '?', { class: 'device' }),
        el('td', rank >= 0 ? rank : 'idle', { class: 'rank' }));
      return tr;
    }));
    if (workers.length === 0) {
      const tr = el('tr');
      tr.append(el('td', 'no workers registered', { colspan: 3, class: 'muted' }));
      body.append(tr);
    }
  }
  const rankKey = r => (num(r) !== null && r >= 0 ? r : 1e9);

  // ---- Runs -----------------------------------------------------------------------------------------------------
  async function refreshRuns() {
    const r = await api('api/runs');
    ui.runs = Array.isArray(r.runs) ? r.runs : [];
    $('runs-omitted').textContent = r.omitted > 0 ? `(${r.omitted} older not listed)` : '';
    const body = $('runs').tBodies[0];
    body.replaceChildren(...ui.runs.map(run => {
      const tr = el('tr', null, { 'data-run': runKey(run) ?? '', 'data-run-name': run.name ?? '', 'data-state': String(run.state ?? '').toLowerCase(), tabindex: 0 });
      if (ui.view && ui.view.key === runKey(run)) tr.classList.add('selected');
      tr.append(el('td', run.name, { class: 'name', title: run.output ?? '' }), el('td', run.state, { class: 'state' }),
        el('td', `${run.iteration ?? 0} / ${run.total ?? '?'}`, { class: 'iter' }), el('td', run.best ?? '–', { class: 'best' }),
        el('td', when(run.updatedUtc), { class: 'updated' }));
      const pick = () => {
        const active = ui.activeRunId && runKey(runOf(ui.activeRunId) ?? {}) === runKey(run);
        ui.pinned = !active;
        selectRun(run, active ? ui.activeRunId : null);
      };
      tr.addEventListener('click', pick);
      tr.addEventListener('keydown', e => { if (e.key === 'Enter') pick(); });
      return tr;
    }));
    if (ui.runs.length === 0) {
      const tr = el('tr');
      tr.append(el('td', 'no runs yet', { colspan: 5, class: 'muted' }));
      body.append(tr);
    }
  }

  // The active run's folder: the one the seed lists as running, else the spec name the run id starts with.
  function runOf(runId) {
    const running = ui.runs.filter(r => String(r.state).toLowerCase() === 'running');
    const byPrefix = r => runId.startsWith(`${r.name}-`);
    return running.find(byPrefix) ?? running[0] ?? ui.runs.find(byPrefix) ?? null;
  }

  // ---- The viewed run: metrics, samples, quality --------------------------------------------------------------
  function selectRun(run, runId) {
    const key = runKey(run);
    if (ui.view && ui.view.key === key && ui.view.runId === runId) return;
    ui.view = { key, name: run.name, runId };
    ui.rows = new Map();
    ui.quality = [];
    ui.sampleUrl = null;
    $('chart-run').textContent = run.name ?? key;
    for (const tr of $('runs').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.run === key);
    $('sample').hidden = true;
    $('sample').removeAttribute('src');
    $('no-sample').hidden = false;
    $('sample-caption').textContent = '';
    renderQuality();
    scheduleDraw();
    refreshDetail().catch(report);
  }

  async function refreshDetail() {
    const view = ui.view;
    if (!view) return;
    const [metrics, files] = await Promise.all([
      api(`${runPath(view.key)}/metrics`).catch(e => (e.status === 404 ? { rows: [] } : Promise.reject(e))),
      api(`${runPath(view.key)}/files`).catch(e => (e.status === 404 ? { files: [] } : Promise.reject(e))),
    ]);
    if (ui.view !== view) return;   // another run was picked meanwhile
    const quality = [];
    for (const row of metrics.rows ?? []) {
      if (num(row.lossD) !== null || num(row.lossG) !== null) ui.rows.set(row.iteration, row);
      else if (SCORES.some(s => s.keys.some(k => num(row[k]) !== null))) quality.push(row);
    }
    ui.quality = quality;
    renderQuality();
    scheduleDraw();
    renderSample(view, files.files ?? []);
  }

  function renderSample(view, files) {
    const iterationOf = f => { const m = /(\d+)(?!.*\d)/.exec(f.path); return m ? Number(m[1]) : -1; };
    const samples = files.filter(f => f.kind === 'sample' && /\.png$/i.test(f.path));
    if (samples.length === 0) return;
    const newest = samples.reduce((a, b) => (iterationOf(b) >= iterationOf(a) ? b : a));
    const url = filePath(view.key, newest.path);
    if (url === ui.sampleUrl) return;
    ui.sampleUrl = url;
    const img = $('sample');
    img.onload = () => { img.hidden = false; $('no-sample').hidden = true; };
    img.src = url;
    img.dataset.path = newest.path;
    const it = iterationOf(newest);
    $('sample-caption').textContent = it >= 0 ? `iteration ${it}` : newest.path;
  }

  function renderQuality() {
    const dl = $('quality');
    const last = ui.quality[ui.quality.length - 1];
    if (!last) {
      // A cluster's image runs are scored afterwards (gancluster eval); 2-D runs get mode scores at each sample save.
      dl.replaceChildren(el('dt', 'none in metrics.csv yet (image runs on a cluster: gancluster eval)', { class: 'muted' }));
      return;
    }
    const items = [];
    for (const s of SCORES) {
      const key = s.keys.find(k => num(last[k]) !== null);
      if (!key) continue;
      items.push(el('dt', s.label), el('dd', s.percent ? pct(last[key]) : fmt(last[key], s.digits), { 'data-score': s.keys[0] }));
    }
    items.push(el('dt', 'at iteration'), el('dd', last.iteration, { 'data-score': 'iteration' }));
    const fids = ui.quality.filter(r => num(r.fid) !== null);
    if (fids.length > 1) {
      const best = fids.reduce((a, b) => (b.fid < a.fid ? b : a));
      items.push(el('dt', 'best FD'), el('dd', `${fmt(best.fid, 2)} at ${best.iteration}`, { 'data-score': 'best' }));
    }
    dl.replaceChildren(...items);
  }

  // ---- Live events of the active run ----------------------------------------------------------------------------
  function openEvents(runId) {
    const source = new EventSource(`api/runs/${encodeURIComponent(runId)}/events`);
    ui.events = source;
    const data = e => { try { return JSON.parse(e.data); } catch { return {}; } };
    source.addEventListener('open', () => setStream('open'));
    source.addEventListener('state', e => advance(runId, data(e).iteration));
    source.addEventListener('progress', e => {
      const p = data(e);
      advance(runId, p.iteration);
      if (num(p.total)) renderHeader(p.total);
      if (ui.view && ui.view.runId === runId && num(p.iteration) !== null) {
        ui.rows.set(p.iteration, p);
        scheduleDraw();
      }
    });
    source.addEventListener('note', e => {
      const n = data(e);
      addNote(n.text, n.warning);
      refreshDetailSoon();   // a save wrote samples or scores: show them now rather than at the next poll
    });
    source.addEventListener('ended', e => {
      const n = data(e);
      addNote(`run ${n.runId ?? runId} ended: ${n.outcome ?? '?'}${n.message ? ` (${n.message})` : ''}`, n.outcome && n.outcome !== 'Completed');
      closeEvents();
      refreshRuns().then(refreshDetail).catch(report);
    });
    source.addEventListener('error', e => {
      // The server's own "error" event (the coordinator lost the run) carries data; the browser's has none.
      if (e.data) addNote(`event stream: ${data(e).error ?? e.data}`, true);
      // EventSource reconnects by itself; once closed (the run ended, a 404) the status poll opens a new one if needed.
      if (source.readyState === EventSource.CLOSED && ui.events === source) ui.events = null;
      setStream(source.readyState === EventSource.OPEN ? 'open' : source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
    });
  }

  function closeEvents() {
    if (ui.events) ui.events.close();
    ui.events = null;
    setStream('closed');
  }

  // The live indicator: data-state open | reconnecting | closed.
  function setStream(stateName) {
    const s = $('stream');
    s.dataset.state = stateName;
    s.textContent = stateName === 'open' ? '● live' : stateName === 'reconnecting' ? '● reconnecting…' : '';
  }

  function advance(runId, iteration) {
    if (runId !== ui.activeRunId || num(iteration) === null) return;
    ui.liveIteration = Math.max(ui.liveIteration, iteration);
    const total = num(ui.status?.total) ?? 0;
    renderHeader(total);
    // The active run's row in the list follows too (the list itself is polled less often).
    const run = runOf(runId);
    const cell = run && [...$('runs').tBodies[0].rows].find(tr => tr.dataset.run === runKey(run))?.querySelector('.iter');
    if (cell) cell.textContent = `${ui.liveIteration} / ${run.total ?? total}`;
  }

  let detailTimer = 0;
  function refreshDetailSoon() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(() => refreshDetail().catch(report), 500);
  }

  function addNote(text, warning) {
    const list = $('notes');
    const li = el('li', null, warning ? { class: 'warning' } : {});
    li.append(el('time', new Date().toLocaleTimeString()), document.createTextNode(` ${text ?? ''}`));
    list.prepend(li);
    while (list.children.length > MAX_NOTES) list.lastElementChild.remove();
  }

  // ---- Charts (canvas, drawn here: no library) -----------------------------------------------------------------
  function scheduleDraw() {
    if (ui.drawPending) return;
    ui.drawPending = true;
    requestAnimationFrame(() => {
      ui.drawPending = false;
      const rows = [...ui.rows.values()].sort((a, b) => a.iteration - b.iteration);
      drawChart($('loss-chart'), $('loss-legend'), LOSSES, rows);
      drawChart($('d-chart'), $('d-legend'), OUTPUTS, rows);
    });
  }

  function drawChart(canvas, legend, series, rows) {
    const points = rows.filter(r => series.some(s => num(r[s.key]) !== null));
    canvas.dataset.points = String(points.length);
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600, height = canvas.clientHeight || 200;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = '11px system-ui, sans-serif';

    legend.replaceChildren(...series.map(s => {
      const last = [...points].reverse().find(r => num(r[s.key]) !== null);
      const item = el('span', null, { 'data-series': s.key });
      item.append(el('i', null, { style: `background:${s.color}` }), document.createTextNode(`${s.label} ${last ? fmt(last[s.key]) : '–'}`));
      return item;
    }));

    const left = 48, right = 10, top = 8, bottom = 20;
    const w = width - left - right, h = height - top - bottom;
    g.strokeStyle = '#ccd';
    g.strokeRect(left + 0.5, top + 0.5, w, h);
    if (points.length === 0) {
      g.fillStyle = '#888';
      g.fillText('no points yet', left + 8, top + 16);
      return;
    }
    const values = points.flatMap(r => series.map(s => num(r[s.key])).filter(v => v !== null));
    let lo = Math.min(...values), hi = Math.max(...values);
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const pad = (hi - lo) * 0.05;
    lo -= pad; hi += pad;
    const x0 = points[0].iteration, x1 = Math.max(points[points.length - 1].iteration, x0 + 1);
    const X = i => left + ((i - x0) / (x1 - x0)) * w;
    const Y = v => top + (1 - (v - lo) / (hi - lo)) * h;

    g.fillStyle = '#667';
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    // Tick labels with as many decimals as the step between them needs.
    const tickDigits = Math.min(6, Math.max(0, 1 - Math.floor(Math.log10((hi - lo) / 4))));
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4, y = Math.round(Y(v)) + 0.5;
      g.strokeStyle = '#eef';
      g.beginPath(); g.moveTo(left + 1, y); g.lineTo(left + w, y); g.stroke();
      g.fillText(v.toFixed(tickDigits), left - 4, y);
    }
    g.textBaseline = 'top';
    for (const [i, align] of [[x0, 'left'], [(x0 + x1) / 2, 'center'], [x1, 'right']]) {
      g.textAlign = align;
      g.fillText(String(Math.round(i)), X(i), top + h + 4);
    }

    g.lineWidth = 1.5;
    g.lineJoin = 'round';
    for (const s of series) {
      g.strokeStyle = s.color;
      g.fillStyle = s.color;
      const own = points.filter(r => num(r[s.key]) !== null);
      if (own.length === 1) {
        g.beginPath(); g.arc(X(own[0].iteration), Y(own[0][s.key]), 2.5, 0, 2 * Math.PI); g.fill();
        continue;
      }
      g.beginPath();
      own.forEach((r, i) => (i === 0 ? g.moveTo(X(r.iteration), Y(r[s.key])) : g.lineTo(X(r.iteration), Y(r[s.key]))));
      g.stroke();
    }
  }

  // ---- Login ----------------------------------------------------------------------------------------------------
  function showLogin() {
    if (ui.stopped) return;
    ui.stopped = true;
    closeEvents();
    $('login').hidden = false;
    $('logout').hidden = true;
    setConnection('not logged in', true);
    $('token').focus();
  }

  async function login(event) {
    event.preventDefault();
    const error = $('login-error');
    error.hidden = true;
    $('login-button').disabled = true;
    try {
      const response = await fetch('api/login', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: $('token').value.trim() }),
      });
      if (response.ok) { location.reload(); return; }
      error.textContent = response.status === 401 ? 'That is not this cluster\'s token.' : `Login failed: HTTP ${response.status}`;
    } catch (e) {
      error.textContent = `Login failed: ${e.message}`;
    } finally {
      $('login-button').disabled = false;
    }
    error.hidden = false;
  }

  async function logout() {
    try { await fetch('api/logout', { method: 'POST', credentials: 'same-origin' }); } finally { location.reload(); }
  }

  // ---- Polling --------------------------------------------------------------------------------------------------
  function report(e) {
    if (e instanceof Unauthorized) return;
    setConnection(String(e.message ?? e), true);
  }

  function every(ms, task) {
    const tick = async () => {
      if (ui.stopped) return;
      try { await task(); } catch (e) { report(e); }
      if (!ui.stopped) setTimeout(tick, ms);
    };
    tick();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    window.addEventListener('resize', scheduleDraw);
    every(RUNS_MS, refreshRuns);
    every(STATUS_MS, refreshStatus);
    every(DETAIL_MS, refreshDetail);
    scheduleDraw();
  });
})();
