/* The compare page (/compare/?jobs=1,2,3): the jobs' summaries side by side, the curves of a metric they share
 * overlaid (one colour per job), and one Pareto chart over all their trials on two axes the reader picks. */
"use strict";
const AutoMLCompare = (() => {
  const {api, el} = AutoML;
  const COLOURS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d", "#e67700"];
  const MAX_JOBS = 8, MAX_PANELS = 12;
  const CONFIG = {displaylogo: false, responsive: true};

  function ids() {
    const raw = new URLSearchParams(window.location.search).get("jobs") || "";
    return [...new Set(raw.split(/[\s,]+/).filter(s => /^[0-9]{1,12}$/.test(s)))].slice(0, MAX_JOBS);
  }

  async function all(path) {
    const out = [];
    for (let url = path; url;) {
      const r = await api(url);
      if (!r.ok) break;
      out.push(...r.data.results);
      url = r.data.next ? r.data.next.replace(/^https?:\/\/[^/]+/, "") : null;
    }
    return out;
  }

  // One bounded answer per job (each series down-sampled on the server, its latest trials' series), as the job
  // page's first look: following ?since=0 page by page read every point of a big job before drawing anything.
  const MAX_POINTS = 1000, MAX_SERIES = 20;
  async function metricStore(id) {
    const store = AutoMLCurves.newStore();
    const r = await api(`/api/v1/jobs/${id}/metrics/?max_points=${MAX_POINTS}&max_series=${MAX_SERIES}`);
    if (r.ok) for (const s of r.data.series) AutoMLCurves.addSeries(store, s);
    return store;
  }

  function fmtHeadline(h) {
    if (!h) return "—";
    let value = typeof h.value === "number" ? AutoML.fmtNumber(h.value) : String(h.value);
    if (h.unit) value += ["%", "×"].includes(h.unit) ? h.unit : ` ${h.unit}`;
    return value;
  }

  function summaryTable(table, jobs) {
    const labels = [];
    for (const j of jobs) for (const h of (j.result && j.result.summary) || []) if (!labels.includes(h.label)) labels.push(h.label);
    const head = el("tr", {}, el("th", {scope: "col", text: "Job"}), ...jobs.map((j, i) => el("th", {scope: "col", "data-job": j.id},
      el("span", {class: "swatch", style: `background: ${COLOURS[i % COLOURS.length]}`, "aria-hidden": "true"}),
      el("a", {href: `/jobs/${j.id}/`, text: `#${j.id}`}), ` ${j.name || ""}`)));
    const facts = [
      ["Kind", j => j.kind], ["Status", j => j.status],
      ["Elapsed", j => (j.started_at ? AutoMLJob.fmtDuration(((j.finished_at ? Date.parse(j.finished_at) : Date.now()) - Date.parse(j.started_at)) / 1000) : "—")],
      ["Budget", j => `${AutoML.fmtNumber(j.budget)} CPU-min`],
    ];
    const rows = facts.map(([label, f]) => el("tr", {}, el("th", {scope: "row", text: label}), ...jobs.map(j => el("td", {text: f(j)}))));
    for (const label of labels) {
      const entries = jobs.map(j => ((j.result && j.result.summary) || []).find(h => h.label === label));
      const better = (entries.find(Boolean) || {}).better;
      const numbers = entries.map(h => (h && typeof h.value === "number" ? h.value : null));
      let best = null;
      if (better && numbers.filter(v => v !== null).length > 1) {
        best = (better === "higher" ? Math.max : Math.min)(...numbers.filter(v => v !== null));
      }
      rows.push(el("tr", {"data-headline": label}, el("th", {scope: "row", text: label}), ...entries.map((h, i) => el("td",
        {class: numbers[i] !== null && numbers[i] === best ? "best" : undefined},
        fmtHeadline(h), numbers[i] !== null && numbers[i] === best ? el("span", {class: "best-badge", text: ` ★ ${better} is better`}) : ""))));
    }
    table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  }

  async function curves(holder, jobs, specsByKind) {
    const stores = await Promise.all(jobs.map(j => metricStore(j.id)));
    const jobsWith = new Map();
    stores.forEach((store, i) => { for (const name of store.keys()) jobsWith.set(name, [...(jobsWith.get(name) || []), i]); });
    let names = [...jobsWith.keys()].filter(n => jobsWith.get(n).length > 1);
    const note = holder.querySelector(".curves-empty");
    if (!names.length) names = [...jobsWith.keys()];
    note.textContent = !jobsWith.size ? "These jobs have no metric points."
      : names.some(n => jobsWith.get(n).length > 1) ? "" : "These jobs share no metric; each job's own curves are shown.";
    const panel = AutoMLCurves.panels(holder);
    const drawings = names.slice(0, MAX_PANELS).map((name, order) => {
      const traces = [], units = [];
      for (const i of jobsWith.get(name)) {
        const spec = specsByKind(jobs[i].kind)(name);
        units.push(spec.unit);
        const colour = COLOURS[i % COLOURS.length];
        traces.push(...AutoMLCurves.metricTraces(name, stores[i].get(name), spec,
          {prefix: `#${jobs[i].id} `, legendgroup: `job ${jobs[i].id}`, noBest: true,
           style: {line: {color: colour, width: 1.5}, marker: {color: colour}}}));
      }
      const p = panel(name, `${name} of jobs ${jobsWith.get(name).map(i => `#${jobs[i].id}`).join(", ")} by step`, order);
      return [p, traces, AutoMLCurves.layoutFor(name, units, traces)];
    });
    // Every panel is in its place before any is drawn, so each sizes to its own box.
    await Promise.all(drawings.map(([p, traces, layout]) => AutoMLCurves.draw(p, traces, layout)));
  }

  // --- Pareto: every trial of every job as a point; the front is the points no other beats on both axes --------
  function axisOptions(jobs, trialsByJob, specsByKind) {
    const options = new Map();  // key -> {label, direction, value(job, trial)}
    for (const j of jobs) (j.objectives || []).forEach((o, i) => {
      const key = `objective:${o.name}`;
      if (!options.has(key)) options.set(key, {label: `${o.name}${o.unit ? ` (${o.unit})` : ""}`, direction: o.direction,
        value: (job, t) => { const k = (job.objectives || []).findIndex(x => x.name === o.name); return k < 0 ? null : (t.values || [])[k]; }});
    });
    jobs.forEach((j, i) => {
      for (const t of trialsByJob[i]) for (const [k, v] of Object.entries(t.metrics || {})) {
        const key = `metric:${k}`;
        if (typeof v !== "number" || options.has(key) || options.has(`objective:${k}`)) continue;
        const group = specsByKind(j.kind)(k).group;
        options.set(key, {label: `metric ${k}`, direction: AutoMLCurves.BEST[group] === "max" ? "maximize" : "minimize",
                          value: (job, trial) => (trial.metrics || {})[k]});
      }
    });
    options.set("duration", {label: "duration (s)", direction: "minimize", value: (job, t) => t.duration_seconds});
    return options;
  }

  function front(points, dx, dy) {
    const better = (a, b, d) => (d === "maximize" ? a >= b : a <= b);
    const strictly = (a, b, d) => (d === "maximize" ? a > b : a < b);
    return points.filter(p => !points.some(q => q !== p && better(q.x, p.x, dx) && better(q.y, p.y, dy)
                                                && (strictly(q.x, p.x, dx) || strictly(q.y, p.y, dy))));
  }

  function pareto(section, jobs, trialsByJob, specsByKind) {
    const xSelect = section.querySelector("#pareto-x"), ySelect = section.querySelector("#pareto-y");
    const chart = section.querySelector("#compare-pareto"), note = section.querySelector("#pareto-note");
    const options = axisOptions(jobs, trialsByJob, specsByKind);
    const keys = [...options.keys()];
    const objectiveKeys = keys.filter(k => k.startsWith("objective:"));
    const defaultX = objectiveKeys[0] || keys[0];
    const defaultY = objectiveKeys.find(k => k !== defaultX) || (defaultX === "duration" ? keys[0] : "duration");
    for (const [select, chosen] of [[xSelect, defaultX], [ySelect, defaultY]]) {
      select.replaceChildren(...keys.map(k => el("option", {value: k, text: options.get(k).label, selected: k === chosen})));
    }
    async function draw() {
      const ox = options.get(xSelect.value), oy = options.get(ySelect.value);
      const points = [];
      const traces = jobs.map((j, i) => {
        const xs = [], ys = [], text = [];
        for (const t of trialsByJob[i]) {
          const x = ox.value(j, t), y = oy.value(j, t);
          if (typeof x !== "number" || typeof y !== "number") continue;
          xs.push(x); ys.push(y); text.push(`#${j.id} trial ${t.number}`);
          points.push({x, y, label: `#${j.id} trial ${t.number}`});
        }
        return {type: "scatter", mode: "markers", name: `#${j.id} ${j.kind}`, x: xs, y: ys, text,
                marker: {color: COLOURS[i % COLOURS.length], size: 8, opacity: 0.8},
                hovertemplate: `%{text}<br>${ox.label} %{x}<br>${oy.label} %{y}<extra></extra>`};
      });
      const best = front(points, ox.direction, oy.direction).sort((a, b) => a.x - b.x);
      traces.push({type: "scatter", mode: "lines+markers", name: "Pareto front", x: best.map(p => p.x), y: best.map(p => p.y),
                   text: best.map(p => p.label), line: {shape: "hv", color: "#222", dash: "dot"},
                   marker: {symbol: "circle-open", size: 14, color: "#222", line: {width: 2}},
                   hovertemplate: "%{text} (on the front)<extra></extra>"});
      const arrow = d => (d === "maximize" ? "higher is better" : "lower is better");
      await Plotly.react(chart, traces, {
        margin: {t: 10, r: 10, b: 50, l: 65}, height: 420, legend: {orientation: "h", y: -0.2},
        xaxis: {title: {text: `${ox.label} — ${arrow(ox.direction)}`}}, yaxis: {title: {text: `${oy.label} — ${arrow(oy.direction)}`}},
      }, CONFIG);
      chart.setAttribute("aria-label", `Pareto chart: ${points.length} trials of ${jobs.length} jobs, ${ox.label} against ${oy.label}; ${best.length} on the front`);
      note.textContent = `${points.length} trials with both values; ${best.length} on the front: ${best.map(p => p.label).join(", ")}.`;
    }
    xSelect.addEventListener("change", draw);
    ySelect.addEventListener("change", draw);
    return draw();
  }

  async function page() {
    const form = document.getElementById("compare-form");
    const status = document.getElementById("compare-status");
    const wanted = ids();
    form.elements.jobs.value = wanted.join(", ");
    form.addEventListener("submit", event => {
      event.preventDefault();
      const list = form.elements.jobs.value.split(/[\s,]+/).filter(s => /^[0-9]+$/.test(s));
      window.location.search = `?jobs=${list.join(",")}`;
    });
    const sections = document.querySelectorAll(".compare-part");
    if (wanted.length < 2) {
      status.textContent = "Name two or more of your jobs to compare (or tick them on the job list).";
      sections.forEach(s => { s.hidden = true; });
      return;
    }
    status.textContent = `Loading ${wanted.length} jobs…`;
    const [kindsR, ...jobRs] = await Promise.all([api("/api/v1/job-kinds/?page_size=1000"), ...wanted.map(id => api(`/api/v1/jobs/${id}/`))]);
    const jobs = jobRs.filter(r => r.ok).map(r => r.data);
    const missing = wanted.filter((id, i) => !jobRs[i].ok);
    const matchers = new Map(kindsR.data.results.map(k => [k.name, AutoMLCurves.specMatcher(k.metrics)]));
    const specsByKind = name => matchers.get(name) || AutoMLCurves.specMatcher([]);
    if (jobs.length < 2) {
      status.textContent = `Not enough jobs to compare: ${missing.map(id => `#${id}`).join(", ")} not found among your jobs.`;
      sections.forEach(s => { s.hidden = true; });
      return;
    }
    summaryTable(document.getElementById("compare-summary"), jobs);
    const trialsByJob = await Promise.all(jobs.map(j => all(`/api/v1/jobs/${j.id}/trials/?state=complete&page_size=1000`)));
    await Promise.all([curves(document.getElementById("compare-curves"), jobs, specsByKind),
                       pareto(document.getElementById("compare-pareto-section"), jobs, trialsByJob, specsByKind)]);
    status.textContent = `Comparing ${jobs.map(j => `#${j.id}`).join(", ")}${missing.length ? `; not found: ${missing.map(id => `#${id}`).join(", ")}` : ""}.`;
    document.getElementById("compare").dataset.ready = "1";
  }

  return {page, front};
})();
