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

  function progressCell(job) {
    const bar = el("progress", {max: "1", value: String(job.progress), "aria-label": `job ${job.id} progress`});
    return el("td", {}, bar, ` ${Math.round(job.progress * 100)}%`);
  }

  // --- job list ---------------------------------------------------------------------------------
  function jobListPage() {
    const tbody = document.querySelector("#jobs tbody");
    const form = document.getElementById("filters");
    let timer = null;
    async function refresh() {
      const params = new URLSearchParams(new FormData(form));
      for (const [k, v] of [...params]) if (!v) params.delete(k);
      const r = await api(`/api/v1/jobs/?${params}`);
      if (!r.ok) { tbody.replaceChildren(el("tr", {}, el("td", {colspan: "6", text: "Could not load jobs."}))); return; }
      const rows = r.data.results.map(job => el("tr", {"data-job-id": job.id},
        el("td", {}, el("a", {href: `/jobs/${job.id}/`, text: `#${job.id}`})),
        el("td", {text: job.name}), el("td", {text: job.kind}),
        el("td", {}, el("span", {class: `status ${job.status}`, text: job.status})),
        progressCell(job), el("td", {text: fmtDate(job.created_at)})));
      tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {colspan: "6", text: "No jobs yet."}))]));
      clearTimeout(timer);
      if (r.data.results.some(j => ACTIVE.has(j.status))) timer = setTimeout(refresh, 2000);
    }
    form.addEventListener("change", refresh);
    refresh();
  }

  // --- submit form generated from the kind's JSON Schema ----------------------------------------
  function fieldFor(name, prop, value) {
    const id = `cfg-${name}`;
    const wrap = el("div", {class: "field", "data-field": name});
    const bounds = [];
    if (prop.minimum !== undefined) bounds.push(`min ${prop.minimum}`);
    if (prop.exclusiveMinimum !== undefined) bounds.push(`> ${prop.exclusiveMinimum}`);
    if (prop.maximum !== undefined) bounds.push(`max ${prop.maximum}`);
    wrap.append(el("label", {for: id, text: name.replaceAll("_", " ") + (bounds.length ? ` (${bounds.join(", ")})` : "")}));
    let input;
    if (prop.type === "array" && prop.items && prop.items.enum) {
      // A set of choices: one checkbox each, so nobody has to type JSON.
      input = el("span", {id, role: "group", class: "choices", "data-choices": "1"});
      for (const option of prop.items.enum) {
        const box = el("input", {type: "checkbox", id: `${id}-${option}`, value: option,
                                 checked: (value || []).includes(option)});
        input.append(el("label", {class: "choice", for: `${id}-${option}`}, box, ` ${option}`));
      }
    } else if (prop.enum) {
      input = el("select", {id, name});
      for (const option of prop.enum) input.append(el("option", {value: option, text: option, selected: option === value}));
    } else if (prop.type === "boolean") {
      input = el("input", {id, name, type: "checkbox", checked: !!value});
    } else if (prop.type === "integer" || prop.type === "number") {
      input = el("input", {id, name, type: "number", value: value ?? "", step: prop.type === "integer" ? "1" : "any",
        min: prop.minimum, max: prop.maximum});
    } else if (prop.type === "array" || prop.type === "object") {
      input = el("input", {id, name, value: JSON.stringify(value ?? null), "data-json": "1"});
    } else {
      input = el("input", {id, name, value: value ?? ""});
    }
    input.dataset.type = prop.type || "string";
    const help = el("small", {class: "help", id: `${id}-help`, text: prop.description || ""});
    input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
    wrap.append(input, help, el("small", {class: "error", id: `${id}-error`, role: "status"}));
    return wrap;
  }

  function readField(input) {
    const type = input.dataset.type;
    if (input.dataset.choices) return [...input.querySelectorAll("input:checked")].map(box => box.value);
    if (input.type === "checkbox") return input.checked;
    if (input.dataset.json) { try { return JSON.parse(input.value); } catch (e) { return input.value; } }
    if (type === "integer" || type === "number") return input.value === "" ? null : Number(input.value);
    return input.value;
  }

  async function submitPage() {
    const form = document.getElementById("submit-form");
    const kindSelect = document.getElementById("kind");
    const fields = document.getElementById("config-fields");
    const datasetSelect = document.getElementById("dataset");
    const parentSelect = document.getElementById("parent");
    const kinds = (await api("/api/v1/job-kinds/")).data.results;
    const datasets = (await api("/api/v1/datasets/")).data.results;
    const parents = (await api("/api/v1/jobs/?status=succeeded")).data.results;
    for (const job of parents) {
      if (job.result && job.result.output_model)
        parentSelect.append(el("option", {value: job.id, text: `#${job.id} ${job.kind} ${job.name}`,
                                          selected: String(job.id) === form.dataset.parent}));
    }
    const exampleSelect = document.getElementById("example");
    function renderFields() {
      const kind = kinds.find(k => k.name === kindSelect.value);
      const values = {...kind.defaults, ...((kind.examples || {})[exampleSelect.value] || {})};
      fields.replaceChildren(el("legend", {text: "Configuration"}));
      for (const [name, prop] of Object.entries(kind.schema.properties)) fields.append(fieldFor(name, prop, values[name]));
    }
    exampleSelect.addEventListener("change", renderFields);
    function render() {
      const kind = kinds.find(k => k.name === kindSelect.value);
      document.getElementById("kind-description").textContent = kind.description;
      exampleSelect.replaceChildren(...Object.keys(kind.examples || {default: {}}).map(name =>
        el("option", {value: name, text: name, selected: name === "default"})));
      renderFields();
      datasetSelect.replaceChildren(...datasets.filter(d => kind.modalities.includes(d.modality)).map(d =>
        el("option", {value: d.id, text: `${d.name}${d.is_builtin ? "" : " (uploaded)"} · ${d.modality}`,
                      selected: d.builtin === kind.default_dataset})));
      document.getElementById("parent-row").hidden = !kind.accepts_model;
    }
    kindSelect.addEventListener("change", render);
    render();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const e of form.querySelectorAll(".error")) e.textContent = "";
      const config = {};
      for (const input of fields.querySelectorAll("[data-type]")) config[input.name || input.id.slice(4)] = readField(input);
      const body = {kind: kindSelect.value, name: form.elements.name.value, config, dataset: datasetSelect.value};
      if (!document.getElementById("parent-row").hidden && parentSelect.value) body.parent = Number(parentSelect.value);
      const button = document.getElementById("submit-button");
      button.disabled = true;
      const r = await api("/api/v1/jobs/", {method: "POST", body});
      button.disabled = false;
      if (r.ok) { window.location.href = `/jobs/${r.data.id}/`; return; }
      const general = [];
      for (const [key, messages] of Object.entries(r.data || {detail: [`HTTP ${r.status}`]})) {
        const target = key.startsWith("config.") ? document.getElementById(`cfg-${key.slice(7)}-error`) : null;
        const text = [].concat(messages).join(" ");
        if (target) target.textContent = text; else general.push(`${key}: ${text}`);
      }
      document.getElementById("form-errors").textContent = general.join("\n");
    });
  }

  // --- job detail -----------------------------------------------------------------------------
  function jobDetailPage() {
    const root = document.getElementById("job");
    const id = root.dataset.jobId;
    const series = new Map();  // metric name -> {x: [], y: []}
    let since = 0;
    let chartReady = false;

    async function refreshMetrics() {
      let more = true;
      while (more) {
        const r = await api(`/api/v1/jobs/${id}/metrics/?since=${since}`);
        if (!r.ok) return;
        for (const p of r.data.results) {
          if (!series.has(p.name)) series.set(p.name, {x: [], y: []});
          const s = series.get(p.name);
          s.x.push(s.x.length);
          s.y.push(p.value);
        }
        since = r.data.last_id;
        more = !!r.data.next;
      }
      if (!window.Plotly || series.size === 0) return;
      const traces = [...series.entries()].map(([name, s]) => ({name, x: s.x, y: s.y, mode: "lines", type: "scatter"}));
      const layout = {margin: {t: 10, r: 10, b: 40, l: 50}, xaxis: {title: {text: "point"}}, height: 320};
      if (chartReady) Plotly.react("curves", traces, layout, {displaylogo: false, responsive: true});
      else { Plotly.newPlot("curves", traces, layout, {displaylogo: false, responsive: true}); chartReady = true; }
    }

    async function refreshTrials() {
      const r = await api(`/api/v1/jobs/${id}/trials/?page_size=500`);
      if (!r.ok) return;
      document.getElementById("trial-count").textContent = `(${r.data.count})`;
      document.querySelector("#trials tbody").replaceChildren(...r.data.results.map(t => el("tr", {},
        el("td", {text: t.number}), el("td", {text: t.state}), el("td", {text: fmtValue(t.params)}),
        el("td", {text: fmtValue(t.values)}), el("td", {text: t.duration_seconds === null ? "" : t.duration_seconds.toFixed(2)}))));
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
        if (!window.Plotly) continue;
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
    async function refreshFpga(kindName) {
      const info = await describeKind(kindName);
      const r = await api(`/api/v1/fpga-reports/?job=${id}&page_size=1000`);
      if (!r.ok) return;
      const reports = r.data.results;
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
      if (!window.Plotly || estimates.length === 0) return;
      const trace = {x: estimates.map(f => f.dsp), y: estimates.map(f => f.latency_ns), mode: "markers", type: "scatter",
        text: estimates.map(f => `trial ${f.trial_number}: acc ${fmtValue(f.fixed_point_accuracy)}`),
        marker: {color: estimates.map(f => f.fixed_point_accuracy), colorscale: "Viridis", showscale: true,
                 colorbar: {title: {text: "fixed-point acc."}}, size: 9}};
      const layout = {margin: {t: 10, r: 10, b: 45, l: 60}, height: 320,
        xaxis: {title: {text: "DSP (estimate)"}}, yaxis: {title: {text: "latency (ns, estimate)"}}};
      if (fpgaChartReady) Plotly.react("fpga-pareto", [trace], layout, {displaylogo: false, responsive: true});
      else { Plotly.newPlot("fpga-pareto", [trace], layout, {displaylogo: false, responsive: true}); fpgaChartReady = true; }
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
      document.getElementById("job-config").textContent = JSON.stringify(job.config, null, 2);
      document.getElementById("cancel-button").disabled =
        !(ACTIVE.has(job.status) || job.status === "paused") || job.cancel_requested;
      document.getElementById("pause-button").disabled =
        !ACTIVE.has(job.status) || job.cancel_requested || job.pause_requested;
      document.getElementById("resume-button").disabled = job.status !== "paused";
      document.getElementById("parent-link").hidden = !(job.result && job.result.output_model);
      await Promise.all([refreshTrials(), refreshMetrics(), refreshArtifacts(), refreshFpga(job.kind)]);
      if (ACTIVE.has(job.status)) setTimeout(refresh, 1000);
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
    for (const action of ["cancel", "pause", "resume"]) {
      document.getElementById(`${action}-button`).addEventListener("click", async () => {
        const r = await api(`/api/v1/jobs/${id}/${action}/`, {method: "POST"});
        document.getElementById("action-error").textContent = r.ok ? "" : Object.values(r.data || {})
          .map(v => [].concat(v).join(" ")).join("; ") || `HTTP ${r.status}`;
        refresh();
      });
    }
    document.getElementById("rerun-button").addEventListener("click", async () => {
      const r = await api(`/api/v1/jobs/${id}/rerun/`, {method: "POST"});
      if (r.ok) window.location.href = `/jobs/${r.data.id}/`;
      else document.getElementById("job-error").textContent = JSON.stringify(r.data);
    });
    refresh();
  }

  return {jobListPage, submitPage, jobDetailPage, api};
})();
