/* Live curves: one panel per axis group the kind declares for its metrics (accuracy, loss, resources, ...), x the
 * step each point was reported at, one trace per trial (click a legend entry to hide or show it), markers where a
 * series has few points, a best-so-far line where the group says which way is better, and a log axis where the
 * values span decades. The points are polled with ?since= twice a second while the job is active. */
"use strict";
const AutoMLCurves = (() => {
  const {api, el} = AutoML;
  const GROUP_ORDER = ["accuracy", "loss", "resources", "time", "bytes", "other"];
  const BEST = {accuracy: "max", loss: "min"};  // the groups whose better direction is plain
  const FEW_POINTS = 15;  // a trace with this many points or fewer is drawn with markers
  const POLL_MS = 300;
  const MAX_POINTS = 2000, MAX_SERIES = 20;  // the first answer's bound: points per series, trials per metric
  // A trace with more points than this is drawn with WebGL (scattergl). Measured in headless Chromium on 2 cores: a
  // 2,000-point line beside 20 short ones drew in 226-271 ms as SVG and 399-558 ms as WebGL (its context is costly
  // to start), so the first answer's series (at most MAX_POINTS) stay SVG.
  const LONG = MAX_POINTS;
  const CONFIG = {displaylogo: false, responsive: true};
  let current = null;  // the page's live curves (the browser test reads its log)

  function globRegExp(glob) {
    return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".")}$`);
  }

  /** The metric declarations of a kind as matchers: the first whose name (or glob) matches a metric wins. */
  function specMatcher(specs) {
    const compiled = (specs || []).map(s => ({...s, re: globRegExp(s.name)}));
    return name => compiled.find(s => s.re.test(name)) || {name, unit: "", group: "other", description: ""};
  }

  /** Points kept per metric name and trial: Map name -> Map trialKey -> {trial, x: [], y: []}. */
  function newStore() { return new Map(); }
  function addPoint(store, p) {
    if (!store.has(p.name)) store.set(p.name, new Map());
    const byTrial = store.get(p.name);
    const key = p.trial === null || p.trial === undefined ? "" : String(p.trial);
    if (!byTrial.has(key)) byTrial.set(key, {trial: p.trial, x: [], y: []});
    const s = byTrial.get(key);
    // Points arrive in storage order; a step reported out of order is put in its place.
    let i = s.x.length;
    while (i > 0 && s.x[i - 1] > p.step) i--;
    s.x.splice(i, 0, p.step);
    s.y.splice(i, 0, p.value);
  }

  /** A whole series at once (the first answer's columns, in step order). */
  function addSeries(store, s) {
    if (!store.has(s.name)) store.set(s.name, new Map());
    const key = s.trial === null || s.trial === undefined ? "" : String(s.trial);
    store.get(s.name).set(key, {trial: s.trial, x: s.step.slice(), y: s.value.slice()});
  }

  function runningBest(ys, direction) {
    const out = [];
    let best = null;
    for (const y of ys) {
      if (best === null || (direction === "max" ? y > best : y < best)) best = y;
      out.push(best);
    }
    return out;
  }

  /** The traces of one metric: a trace per trial; or one across trials when each trial gave one point (a value
   * per trial, x = the trial's step). */
  function metricTraces(name, byTrial, spec, options = {}) {
    const series = [...byTrial.values()].sort((a, b) => (a.trial ?? -1) - (b.trial ?? -1));
    const prefix = options.prefix || "";
    const traces = [];
    const line = (s, label, extra = {}) => ({
      type: s.x.length > LONG ? "scattergl" : "scatter", name: label, x: s.x, y: s.y, legendgroup: options.legendgroup || name,
      mode: s.x.length <= FEW_POINTS ? "lines+markers" : "lines", marker: {size: s.x.length === 1 ? 9 : 6},
      hovertemplate: `${label}<br>step %{x}<br>%{y}<extra></extra>`, ...extra});
    let merged = null;
    if (series.length > 1 && series.every(s => s.x.length === 1)) {
      const pts = series.map(s => [s.x[0], s.y[0]]).sort((a, b) => a[0] - b[0]);
      merged = {x: pts.map(p => p[0]), y: pts.map(p => p[1])};
      traces.push(line(merged, `${prefix}${name} (one per trial)`, options.style || {}));
    } else {
      for (const s of series) {
        const label = `${prefix}${name}${s.trial === null || s.trial === undefined ? "" : ` · trial ${s.trial}`}`;
        traces.push(line(s, label, options.style || {}));
      }
      if (series.length === 1) merged = series[0];
    }
    const direction = BEST[spec.group];
    if (merged && direction && merged.x.length > 1 && !options.noBest) {
      traces.push({type: merged.x.length > LONG ? "scattergl" : "scatter", mode: "lines", name: `${prefix}${name}: best so far`, x: merged.x,
                   y: runningBest(merged.y, direction), line: {dash: "dot", shape: "hv", width: 2},
                   legendgroup: options.legendgroup || name, hoverinfo: "skip"});
    }
    return traces;
  }

  function spansDecades(traces) {
    const ys = traces.flatMap(t => t.y);
    if (!ys.length || ys.some(v => v <= 0)) return false;
    return Math.max(...ys) / Math.min(...ys) >= 100;
  }

  function layoutFor(group, units, traces, extra = {}) {
    const unit = [...new Set(units.filter(Boolean))].join(", ");
    const log = spansDecades(traces);
    return {
      margin: {t: 28, r: 10, b: 42, l: 58}, height: 300,
      title: {text: `${group}${unit ? ` (${unit})` : ""}`, font: {size: 14}, x: 0, xanchor: "left"},
      xaxis: {title: {text: "step"}, zeroline: false},
      yaxis: {title: {text: `${unit || group}${log ? ", log scale" : ""}`}, type: log ? "log" : "linear", zeroline: false},
      showlegend: true, ...extra,
    };
  }

  /** A panel (figure with a chart) per key, made on first use, kept in ``holder`` in ``order``. A new panel can
   * narrow the others (they share the row): ``panel.resizeAll()`` fits the drawn ones to their boxes again. */
  function panels(holder) {
    const made = new Map();
    function panel(key, label, order) {
      if (!made.has(key)) {
        const chart = el("div", {class: "chart", role: "img", "aria-label": label});
        const fig = el("figure", {class: "curve-panel", "data-group": key}, chart);
        made.set(key, {fig, chart, drawn: false, order});
        const after = [...made.values()].filter(p => p.order > order && p.fig.isConnected).sort((a, b) => a.order - b.order)[0];
        holder.insertBefore(fig, after ? after.fig : null);
        panel.added = true;
      }
      return made.get(key);
    }
    panel.added = false;
    panel.resizeAll = () => {
      for (const p of made.values()) if (p.drawn) Plotly.Plots.resize(p.chart);
      panel.added = false;
    };
    return panel;
  }

  /** After the browser has painted what is drawn so far. */
  function nextPaint() {
    return new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve, 0)));
  }

  async function draw(p, traces, layout) {
    await Plotly.react(p.chart, traces, layout, CONFIG);
    p.drawn = true;
  }

  /** The job page's live curves for job ``jobId`` into ``holder``: call refresh(job) on every poll of the job. */
  function live(holder, jobId) {
    const store = newStore();
    const panel = panels(holder);
    const empty = holder.querySelector(".curves-empty");
    let since = 0, specOf = null, timer = null, active = false, busy = false, firstDone = false;
    let hiddenSeries = [];  // metric names whose older trials' series the first answer left out
    // [point id, ms since the epoch when it was drawn, when its answer came]: the browser test measures with it
    const log = [];

    let specsAsked = null;
    function loadSpecs(kindName) {
      specsAsked ??= api(`/api/v1/job-kinds/${encodeURIComponent(kindName)}/`)
        .then(r => { specOf = specMatcher(r.ok ? r.data.metrics : []); });
      return specsAsked;
    }
    // Settled once the first answer is drawn (or has nothing to draw): the page asks for its other parts after it,
    // so on a big job their answers and drawing do not hold up the first curve.
    let firstDrawnSettle;
    const firstDrawn = new Promise(resolve => { firstDrawnSettle = resolve; });

    // Polling does not wait for drawing: points that arrive while a drawing is under way are drawn together by the
    // next one, so a slow drawing delays the next answer's points by at most its own length.
    let pending = [], pendingNames = new Set(), drawing = null;
    async function poll() {
      if (busy) return;
      busy = true;
      try {
        if (since === 0 && !firstDone) {
          // The first look is one bounded answer (each series down-sampled on the server, the latest trials' series),
          // drawn at once; what comes after it is polled point by point.
          const r = await api(`/api/v1/jobs/${jobId}/metrics/?max_points=${MAX_POINTS}&max_series=${MAX_SERIES}`);
          const received = Date.now();
          if (!r.ok) { firstDrawnSettle(); return; }
          firstDone = true;
          for (const s of r.data.series) {
            addSeries(store, s);
            for (const id of s.id) pending.push([id, received]);
            pendingNames.add(s.name);
          }
          since = r.data.last_id;
          hiddenSeries = r.data.more_series;
          // the first look is drawn now, not after the first ?since= poll below has come back
          drawPending().finally(firstDrawnSettle);
        }
        for (let more = true; more;) {
          const r = await api(`/api/v1/jobs/${jobId}/metrics/?since=${since}`);
          const received = Date.now();
          if (!r.ok) break;
          for (const p of r.data.results) { addPoint(store, p); pending.push([p.id, received]); pendingNames.add(p.name); }
          since = r.data.last_id;
          more = !!r.data.next;
        }
      } finally {
        busy = false;
        if (!firstDone) firstDrawnSettle();  // the first answer failed: the page's other parts must not wait on it
      }
      if (pending.length) await drawPending();
    }
    async function drawPending() {
      while (drawing) await drawing;  // the drawing under way; then, if nobody took them, ours
      if (!pending.length) return;
      const points = pending, names = pendingNames;
      pending = []; pendingNames = new Set();
      drawing = render(names);
      try { await drawing; } finally { drawing = null; }
      const now = Date.now();
      for (const [id, received] of points) log.push([id, now, received]);
    }

    /** Draw the panels of the groups ``changed`` metric names belong to (every group when not given). */
    async function render(changed) {
      if (specsAsked) await specsAsked;
      if (!specOf || !(await AutoML.plotly())) return;
      const dirty = changed ? new Set([...changed].map(name => specOf(name).group)) : null;
      const groups = new Map();
      for (const [name, byTrial] of store) {
        const spec = specOf(name);
        if (!groups.has(spec.group)) groups.set(spec.group, {traces: [], units: [], names: []});
        const g = groups.get(spec.group);
        g.traces.push(...metricTraces(name, byTrial, spec));
        g.units.push(spec.unit);
        g.names.push(name);
      }
      if (empty) empty.hidden = groups.size > 0;
      const panelsOf = new Map();
      for (const [group, g] of groups) {  // every panel in its place before any is drawn: they size to their box
        const order = GROUP_ORDER.indexOf(group);
        const p = panel(group, `${group} curves: ${g.names.join(", ")}`, order < 0 ? 99 : order);
        p.chart.setAttribute("aria-label", `${group} curves by step: ${g.names.join(", ")}`);
        panelsOf.set(group, p);
      }
      const resize = panel.added;
      // One panel at a time, the page painted between them: the first curve shows before the last panel is drawn.
      const todo = [...groups].filter(([group]) => !dirty || dirty.has(group) || !panelsOf.get(group).drawn)
        .sort(([a], [b]) => panelsOf.get(a).order - panelsOf.get(b).order);
      for (const [i, [group, g]] of todo.entries()) {
        if (i > 0) await nextPaint();
        await draw(panelsOf.get(group), g.traces, layoutFor(group, g.units, g.traces));
      }
      if (resize) panel.resizeAll();
    }

    function loop() {
      clearTimeout(timer);
      if (!active) return;
      timer = setTimeout(() => { poll(); loop(); }, POLL_MS);  // the next poll is not held up by this one's drawing
    }

    /** Ask for the first answer at once, before the job itself has come back (its kind is on the page). */
    function start(kindName) {
      loadSpecs(kindName);
      poll();
    }

    /** Keep up with ``job``: poll on our own clock while it is active, once more when it is not. */
    async function refresh(job) {
      await loadSpecs(job.kind);
      const wasActive = active;
      active = job.status === "queued" || job.status === "running";
      if (!wasActive || !active) await poll();
      if (active && !wasActive) loop();
    }

    current = {start, refresh, firstDrawn, log, store, get hiddenSeries() { return hiddenSeries; }};
    return current;
  }

  return {live, metricTraces, specMatcher, newStore, addPoint, addSeries, layoutFor, panels, draw, BEST,
          get current() { return current; }};
})();
