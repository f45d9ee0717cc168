/* The browser pages: thin views over the public REST API (/api/v1/), no build step. */
"use strict";
const AutoML = (() => {
  const ACTIVE = new Set(["queued", "running"]);

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(path, options = {}) {
    const opts = {credentials: "same-origin", headers: {"Accept": "application/json"}, ...options};
    if (opts.body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRFToken"] = csrfToken();
      opts.body = JSON.stringify(opts.body);
    } else if (opts.method && opts.method !== "GET") {
      opts.headers["X-CSRFToken"] = csrfToken();
    }
    const response = await fetch(path, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return {ok: response.ok, status: response.status, data};
  }

  // plotly.js (3.5 MB) loads async on the job page (<script id="plotly-js" async>), so the page's API calls start
  // while the browser parses it; whatever draws awaits this. Null when it could not load (nothing is drawn then).
  let plotlyLoading = null;
  function plotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    const tag = document.getElementById("plotly-js");
    if (!tag) return Promise.resolve(null);
    plotlyLoading ||= new Promise(resolve => {
      tag.addEventListener("load", () => resolve(window.Plotly || null));
      tag.addEventListener("error", () => resolve(null));
    });
    return plotlyLoading;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function fmtDate(s) { return s ? new Date(s).toLocaleString() : ""; }
  function fmtValue(v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.map(fmtValue).join(", ");
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
    if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${k}=${fmtValue(x)}`).join(" ");
    return String(v);
  }

  // --- a result's headlines and tables (every value set as text: nothing from a job is parsed as HTML) ---------
  function fmtNumber(v) {
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return String(Number(v.toPrecision(4)));
  }
  function fmtCell(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return fmtNumber(v);
    return fmtValue(v);
  }
  const BETTER = {higher: ["▲", "higher is better"], lower: ["▼", "lower is better"]};
  const TIGHT_UNITS = new Set(["%", "×"]);
  function headlineNode(h) {
    let value = typeof h.value === "number" ? fmtNumber(h.value) : String(h.value);
    if (h.unit === "points" && typeof h.value === "number" && h.value > 0) value = `+${value}`;
    if (h.unit) value += TIGHT_UNITS.has(h.unit) ? h.unit : ` ${h.unit}`;
    const better = BETTER[h.better];
    return el("div", {class: "headline", role: "group", "aria-label": h.label},
      el("span", {class: "headline-value", text: value}),
      better ? el("span", {class: `headline-better ${h.better}`, title: better[1]}, ` ${better[0]}`,
                  el("span", {class: "sr-only", text: ` (${better[1]})`})) : "",
      el("span", {class: "headline-label", text: h.label}));
  }
  function tableNode(t) {
    return el("table", {class: "grid result-table"}, el("caption", {text: t.name}),
      el("thead", {}, el("tr", {}, ...t.columns.map(c => el("th", {scope: "col", text: c})))),
      el("tbody", {}, ...t.rows.map(row => el("tr", {}, ...row.map(c => el("td", {text: fmtCell(c)}))))));
  }

  // --- job detail -----------------------------------------------------------------------------
  function jobDetailPage() {
    const root = document.getElementById("job");
    const id = root.dataset.jobId;
    plotly();  // listens for plotly.js now: an error that came before the first drawing asked would be missed
    // Curves, trial table, facts and lineage: curves.js, trial_table.js, job_page.js.
    const curves = AutoMLCurves.live(document.getElementById("curves"), id);
    curves.start(root.dataset.jobKind);  // the curves' first answer is asked for with the job, not after it
    const trials = AutoMLTrials.create(document.getElementById("trials-section"), id);
    const renderFacts = AutoMLJob.facts(document.getElementById("job-facts"));
    const renderLineage = AutoMLJob.lineage(document.getElementById("lineage"));
    let refreshTimer = null;
    // While a job runs the page polls; what changes less often than its progress is asked for less often, so the
    // curves' own poll does not wait behind it (a web process answers a browser's requests a few at a time).
    const lastAsked = new Map();
    function due(part, ms, final) {
      const now = Date.now();
      if (!final && now - (lastAsked.get(part) || 0) < ms) return false;
      lastAsked.set(part, now);
      return true;
    }

    let shownResult = null;
    function renderResult(result) {
      const text = result ? JSON.stringify(result, null, 2) : "—";
      if (text === shownResult) return;
      shownResult = text;
      document.getElementById("job-result").textContent = text;
      const headlines = result && Array.isArray(result.summary) ? result.summary : [];
      const tables = result && Array.isArray(result.tables) ? result.tables : [];
      document.getElementById("result-summary").replaceChildren(...headlines.map(headlineNode));
      document.getElementById("result-tables").replaceChildren(...tables.map(tableNode));
      document.getElementById("result-empty").hidden = !!result;
    }

    // A figure artifact is plotly JSON ({data, layout}): fetched and drawn here with the served plotly.js.
    async function drawFigure(a, holder) {
      const caption = holder.querySelector("figcaption");
      try {
        const response = await fetch(a.download_url, {credentials: "same-origin"});
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const figure = JSON.parse(await response.text());
        const Plotly = await plotly();
        if (!Plotly) throw new Error("plotly.js did not load");
        await Plotly.newPlot(holder.querySelector(".chart"), figure.data || [], figure.layout || {},
                             {displaylogo: false, responsive: true});
      } catch (e) {
        caption.textContent = `${a.name}: could not draw it (${e.message})`;
      }
    }

    const shownPlots = new Set();
    async function refreshArtifacts() {
      const r = await api(`/api/v1/jobs/${id}/artifacts/?page_size=1000`);
      if (!r.ok) return;
      document.getElementById("artifacts").replaceChildren(...r.data.results.map(a => el("li", {},
        el("a", {href: a.download_url, text: a.name}), ` ${a.kind}, ${a.size_bytes} bytes, sha256 ${a.sha256.slice(0, 12)}…`)));
      // The kind's own views: drawings shown inline, interactive plots opened on demand (they can be megabytes).
      const figures = document.getElementById("figures");
      for (const a of r.data.results.filter(x => x.kind === "figure" && !shownPlots.has(x.id))) {
        shownPlots.add(a.id);
        const holder = el("figure", {class: "plot figure-plot", "data-artifact": a.name},
          el("div", {class: "chart", role: "img", "aria-label": `${a.name} (figure made by the job)`}),
          el("figcaption", {text: a.name}));
        figures.append(holder);
        drawFigure(a, holder);
      }
      const plots = document.getElementById("plots");
      for (const a of r.data.results.filter(x => x.kind === "plot" && !shownPlots.has(x.id))) {
        shownPlots.add(a.id);
        const src = `${a.download_url}?inline=1`;
        if (/\.(svg|png)$/i.test(a.name)) {
          plots.append(el("figure", {class: "plot"}, el("img", {src, alt: `${a.name} (drawing made by the job)`}),
                          el("figcaption", {text: a.name})));
        } else if (/\.html$/i.test(a.name)) {
          const frame = el("iframe", {title: a.name, class: "plot-frame", sandbox: "allow-scripts", loading: "lazy"});
          const details = el("details", {class: "plot"}, el("summary", {text: `Interactive plot: ${a.name}`}), frame);
          details.addEventListener("toggle", () => { if (details.open && !frame.src) frame.src = src; });
          plots.append(details);
        }
      }
    }

    let fpgaChartReady = false;
    let kindInfo = null;  // the job's kind as the API describes it (what it produces, its metrics)
    async function describeKind(name) {
      if (kindInfo === null && name) kindInfo = (await api(`/api/v1/job-kinds/${encodeURIComponent(name)}/`)).data || {};
      return kindInfo || {};
    }
    let fpgaSeen = null;  // reports found by the last look (a kind that stores none is asked once)
    async function refreshFpga(kindName) {
      const info = await describeKind(kindName);
      if (fpgaSeen === 0 && !info.fpga_reports && kindName) return;
      const r = await api(`/api/v1/fpga-reports/?job=${id}&page_size=1000`);
      if (!r.ok) return;
      const reports = r.data.results;
      fpgaSeen = reports.length;
      document.getElementById("fpga-section").hidden = reports.length === 0 && !info.fpga_reports;
      document.getElementById("fpga-count").textContent = `(${reports.length})`;
      // Each trial's estimate first, then the synthesis reports imported for it, side by side.
      const order = {estimate: 0, vivado_hls: 1, vitis_hls: 2, vivado_synth: 3};
      reports.sort((a, b) => (a.trial_number ?? -1) - (b.trial_number ?? -1) || order[a.source] - order[b.source]);
      const maxUtil = u => { const v = Object.values(u || {}); return v.length ? Math.max(...v) : null; };
      document.querySelector("#fpga-reports tbody").replaceChildren(...reports.map(f => el("tr",
        {class: f.source === "estimate" ? "estimate" : "synthesis"},
        el("td", {text: f.trial_number ?? "—"}), el("td", {text: f.source}), el("td", {text: fmtValue(f.dsp)}),
        el("td", {text: fmtValue(f.lut)}), el("td", {text: fmtValue(f.ff)}), el("td", {text: fmtValue(f.bram)}),
        el("td", {text: fmtValue(f.latency_cycles)}), el("td", {text: fmtValue(f.latency_ns)}),
        el("td", {text: fmtValue(f.initiation_interval)}), el("td", {text: fmtValue(maxUtil(f.utilisation))}),
        el("td", {text: fmtValue(f.fixed_point_accuracy)}), el("td", {text: fmtValue(f.float_accuracy)}),
        el("td", {text: fmtValue(f.reuse_factor)}))));
      const estimates = reports.filter(f => f.source === "estimate");
      if (estimates.length === 0) return;
      const Plotly = await plotly();
      if (!Plotly) return;
      const trace = {x: estimates.map(f => f.dsp), y: estimates.map(f => f.latency_ns), mode: "markers", type: "scatter",
        text: estimates.map(f => `trial ${f.trial_number}: acc ${fmtValue(f.fixed_point_accuracy)}`),
        marker: {color: estimates.map(f => f.fixed_point_accuracy), colorscale: "Viridis", showscale: true,
                 colorbar: {title: {text: "fixed-point acc."}}, size: 9}};
      trace.name = "trials";
      // The trade-off front of what is drawn: no other trial has both fewer DSPs and less latency (nor equal on
      // one and better on the other). Trials without a latency or DSP figure are left out of it.
      const drawn = estimates.filter(f => typeof f.dsp === "number" && typeof f.latency_ns === "number");
      const front = drawn.filter(f => !drawn.some(g => g.dsp <= f.dsp && g.latency_ns <= f.latency_ns &&
                                                       (g.dsp < f.dsp || g.latency_ns < f.latency_ns)))
        .sort((a, b) => a.dsp - b.dsp || a.latency_ns - b.latency_ns);
      const frontTrace = {x: front.map(f => f.dsp), y: front.map(f => f.latency_ns), mode: "lines+markers",
        type: "scatter", name: "Pareto front", line: {shape: "hv", color: "#d9480f", width: 1.5},
        marker: {symbol: "circle-open", size: 13, color: "#d9480f"}, hoverinfo: "skip"};
      const layout = {margin: {t: 10, r: 10, b: 45, l: 60}, height: 320, showlegend: true,
        legend: {orientation: "h", y: -0.25},
        xaxis: {title: {text: "DSP (estimate)"}}, yaxis: {title: {text: "latency (ns, estimate)"}}};
      const traces = [trace, frontTrace];
      if (fpgaChartReady) Plotly.react("fpga-pareto", traces, layout, {displaylogo: false, responsive: true});
      else { Plotly.newPlot("fpga-pareto", traces, layout, {displaylogo: false, responsive: true}); fpgaChartReady = true; }
    }

    async function refresh() {
      const r = await api(`/api/v1/jobs/${id}/`);
      if (!r.ok) { document.getElementById("job-status").textContent = `error ${r.status}`; return; }
      const job = r.data;
      const status = document.getElementById("job-status");
      status.textContent = job.status;
      status.className = `status ${job.status}`;
      document.getElementById("job-progress").value = job.progress;
      document.getElementById("job-progress-text").textContent = `${Math.round(job.progress * 100)}%`;
      document.getElementById("job-progress-message").textContent = job.progress_message;
      const err = document.getElementById("job-error");
      err.hidden = !job.error; err.textContent = job.error;
      renderResult(job.result);
      // What this sweep's estimates rest on (io_parallel MLP or io_stream CNN), once the sweep has said it.
      if (job.result && typeof job.result.estimate_note === "string") {
        document.getElementById("fpga-note").textContent = job.result.estimate_note;
      }
      document.getElementById("job-config").textContent = JSON.stringify(job.config, null, 2);
      document.getElementById("cancel-button").disabled =
        !(ACTIVE.has(job.status) || job.status === "paused") || job.cancel_requested;
      document.getElementById("pause-button").disabled =
        !ACTIVE.has(job.status) || job.cancel_requested || job.pause_requested;
      document.getElementById("resume-button").disabled = job.status !== "paused";
      document.getElementById("rerun-button").disabled = false;  // any job can be run again
      renderFacts(job);
      const final = !ACTIVE.has(job.status) && job.status !== "paused";  // a paused job's parts are asked for as usual
      // The first time, the other parts are asked for once the first curves are drawn: on a big job their answers
      // and drawing (a 1,000-report table and chart) would hold the curves up; then they follow their own clocks.
      const parts = () => Promise.all([due("trials", 2000, final) && trials.refresh(job),
        due("artifacts", 5000, final) && refreshArtifacts(), due("fpga", 3000, final) && refreshFpga(job.kind),
        renderLineage(job)]);
      await Promise.all([curves.refresh(job), curves.firstDrawn.then(parts)]);
      AutoMLJob.parentLinks(document.getElementById("use-as-parent"), job);  // its questions wait behind the rest
      clearTimeout(refreshTimer);  // one loop, however often an action asks for a refresh
      // A paused job can be resumed from anywhere (another tab, the CLI): keep asking, so the page follows it.
      if (ACTIVE.has(job.status) || job.status === "paused") refreshTimer = setTimeout(refresh, 1000);
    }

    document.getElementById("fpga-import").addEventListener("submit", async event => {
      event.preventDefault();
      const form = event.target;
      const body = new FormData(form);
      body.append("job", id);
      const response = await fetch("/api/v1/fpga-reports/", {method: "POST", body, credentials: "same-origin",
        headers: {"X-CSRFToken": csrfToken(), "Accept": "application/json"}});
      const data = await response.json().catch(() => null);
      const error = document.getElementById("fpga-import-error");
      if (!response.ok) {
        error.textContent = data ? Object.entries(data).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ")
                                 : `error ${response.status}`;
        return;
      }
      error.textContent = "";
      form.reset();
      refreshFpga();
    });

    // Cancel, pause (checkpoint kept) and resume: the service says why when it refuses (a finished job, a limit).
    // A cancel cannot be undone, so it is asked for twice.
    for (const action of ["cancel", "pause", "resume"]) {
      document.getElementById(`${action}-button`).addEventListener("click", async () => {
        if (action === "cancel" && !(await AutoMLJob.confirmAction(
          `Cancel job ${id}? A running job stops at its next check; what it stored so far is kept, but it cannot be resumed.`,
          "Cancel the job"))) return;
        const r = await api(`/api/v1/jobs/${id}/${action}/`, {method: "POST"});
        document.getElementById("action-error").textContent = r.ok ? "" : Object.values(r.data || {})
          .map(v => [].concat(v).join(" ")).join("; ") || `HTTP ${r.status}`;
        refresh();
      });
    }
    document.getElementById("rerun-button").addEventListener("click", async () => {
      if (!(await AutoMLJob.confirmAction(`Re-run job ${id}? A new job with the same kind, config, dataset and input is queued.`,
                                          "Queue the re-run"))) return;
      const r = await api(`/api/v1/jobs/${id}/rerun/`, {method: "POST"});
      if (r.ok) window.location.href = `/jobs/${r.data.id}/`;
      else document.getElementById("job-error").textContent = JSON.stringify(r.data);
    });
    refresh();
  }

  return {jobDetailPage, plotly, api, el, csrfToken, fmtDate, fmtValue, fmtNumber, fmtCell, headlineNode, tableNode, ACTIVE};
})();
