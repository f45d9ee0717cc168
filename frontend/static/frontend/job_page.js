/* The job page's facts and links: elapsed time, an ETA from the progress rate, budget, attempts, worker, what a
 * queued job waits for; its lineage (parent and children, linked); "use as parent" links to the kinds that can
 * start from its model (the API's ?parent_for=); and a confirmation before an action that cannot be undone. */
"use strict";
const AutoMLJob = (() => {
  const {api, el} = AutoML;

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (h === 0) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    const d = Math.floor(h / 24);
    if (d === 0) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
    return `${d} d ${h % 24} h`;
  }

  function fmtAge(iso) {
    if (!iso) return "";
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    return seconds < 45 ? "just now" : `${fmtDuration(seconds).replace(/ \d+ s$/, "")} ago`;
  }

  /** The ETA from the progress rate this page has watched (or, before it has watched enough, since the run
   * started): samples of [ms, progress] of the current attempt. */
  function eta(job, samples) {
    if (job.status !== "running" || !(job.progress > 0) || job.progress >= 1) return null;
    const now = Date.now();
    const first = samples.find(([t, p]) => now - t <= 120_000 && p < job.progress);
    if (first && now - first[0] >= 3000) {
      const rate = (job.progress - first[1]) / (now - first[0]);
      if (rate > 0) return {seconds: (1 - job.progress) / rate / 1000, basis: "from the progress of the last minutes"};
    }
    if (job.started_at) {
      const elapsed = (now - Date.parse(job.started_at)) / 1000;
      if (elapsed > 2) return {seconds: elapsed * (1 - job.progress) / job.progress, basis: "from the progress since it started"};
    }
    return null;
  }

  function waitingFor(job) {
    if (job.status === "queued") {
      if (job.cancel_requested) return "being cancelled";
      const q = job.queue;
      if (!q) return "waiting for a worker";
      const ahead = q.ahead === 0 ? "next in the queue" : `${q.ahead} queued job${q.ahead === 1 ? "" : "s"} ahead of it`;
      return `waiting for a free worker: ${ahead}; ${q.running} job${q.running === 1 ? "" : "s"} running now`;
    }
    if (job.status === "paused") return "paused: waits for Resume (its trials and checkpoint are kept)";
    if (job.status === "running" && job.cancel_requested) return "stopping: cancel asked, its worker confirms within seconds";
    if (job.status === "running" && job.pause_requested) return "pausing at its next checkpoint";
    return null;
  }

  function facts(holder) {
    const samples = [];
    const datasets = new Map();  // id -> its name, asked once
    let attempt = null, last = null;
    function datasetName(id) {
      if (id === null || id === undefined) return "—";
      if (!datasets.has(id)) {
        datasets.set(id, `#${id}`);
        api(`/api/v1/datasets/${id}/`).then(r => {
          if (r.ok) datasets.set(id, `${r.data.name} (${r.data.is_builtin ? "built-in" : "uploaded"}, #${id})`);
          if (last) render(last);
        });
      }
      return datasets.get(id);
    }
    function render(job) {
      last = job;
      if (job.attempts !== attempt) { samples.length = 0; attempt = job.attempts; }
      samples.push([Date.now(), job.progress]);
      if (samples.length > 600) samples.splice(0, samples.length - 600);
      const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
      const elapsed = job.started_at ? (end - Date.parse(job.started_at)) / 1000 : null;
      const left = eta(job, samples);
      const rows = [
        ["Created", `${AutoML.fmtDate(job.created_at)} (${fmtAge(job.created_at)})`],
        ["Elapsed", job.started_at ? `${fmtDuration(elapsed)}${job.finished_at ? "" : " so far"}` : "not started"],
      ];
      if (left) rows.push(["ETA", `about ${fmtDuration(left.seconds)} left (${left.basis})`]);
      const waits = waitingFor(job);
      if (waits) rows.push(["Waiting for", waits]);
      rows.push(["Dataset", datasetName(job.dataset)],
                ["Budget", `${AutoML.fmtNumber(job.budget)} CPU-minutes estimated`],
                ["Attempts", String(job.attempts)], ["Worker", job.worker_host || "—"]);
      const key = JSON.stringify(rows);
      if (holder.dataset.key === key) return;
      holder.dataset.key = key;
      holder.replaceChildren(...rows.flatMap(([term, value]) =>
        [el("dt", {text: term}), el("dd", {text: value, "data-fact": term.toLowerCase().replace(/\W+/g, "-")})]));
    }
    return render;
  }

  /** Parent and children, each linked, with kind, name and status (fetched once per job). */
  function lineage(holder) {
    const known = new Map();
    async function describe(id) {
      if (!known.has(id)) {
        const r = await api(`/api/v1/jobs/${id}/`);
        known.set(id, r.ok ? r.data : {id, kind: "", name: "", status: "not yours or removed"});
      }
      return known.get(id);
    }
    const link = j => el("a", {href: `/jobs/${j.id}/`, text: `#${j.id}`});
    const item = j => el("li", {}, link(j), ` ${j.kind}${j.name ? ` “${j.name}”` : ""} · `,
                             el("span", {class: `status ${j.status}`, text: j.status}));
    let shown = "";
    return async function render(job) {
      const key = JSON.stringify([job.parent, job.children]);
      if (key === shown) return;
      shown = key;
      const parts = [];
      if (job.parent) {
        const p = await describe(job.parent);
        parts.push(el("p", {class: "lineage-parent"}, el("strong", {text: "Parent: "}), link(p),
          ` ${p.kind}${p.name ? ` “${p.name}”` : ""} — this job started from its output model`));
      }
      const children = job.children || [];
      if (children.length) {
        const items = await Promise.all(children.slice(0, 50).map(describe));
        parts.push(el("p", {}, el("strong", {text: `Children (${children.length}): `}), "jobs that started from this job's model"),
                   el("ul", {class: "lineage-children"}, ...items.map(item)));
      }
      if (!parts.length) parts.push(el("p", {class: "help", text: "No parent and no children: this job trained its own model and none has started from it yet."}));
      holder.replaceChildren(...parts);
    };
  }

  /** "Use as parent" links: one per kind whose submit check takes this job's model (on its own dataset). */
  async function parentLinks(holder, job) {
    if (holder.dataset.job === String(job.id)) return;
    if (!(job.status === "succeeded" && job.result && job.result.output_model)) { holder.hidden = true; return; }
    holder.dataset.job = String(job.id);
    const kinds = (await api("/api/v1/job-kinds/?page_size=1000")).data.results.filter(k => k.accepts_model);
    const fits = [];
    for (const k of kinds) {
      const r = await api(`/api/v1/jobs/?parent_for=${encodeURIComponent(k.name)}&page_size=1000`);
      if (r.ok && r.data.results.some(j => j.id === job.id)) fits.push(k);
    }
    holder.replaceChildren(el("span", {class: "help", text: fits.length ? "Use as parent of a new job: " : "No kind can start from this job's model."}),
      ...fits.map(k => el("a", {class: "button secondary", href: `/submit/?kind=${encodeURIComponent(k.name)}&parent=${job.id}`,
                               text: `Use as parent → ${k.title}`, "data-kind": k.name})));
    holder.hidden = false;
  }

  /** Ask before ``action`` with an accessible dialog; resolves true when confirmed. */
  function confirmAction(message, confirmLabel) {
    return new Promise(resolve => {
      const dialog = el("dialog", {class: "confirm", "aria-labelledby": "confirm-text"},
        el("p", {id: "confirm-text", text: message}));
      const yes = el("button", {type: "button", text: confirmLabel, class: "danger"});
      const no = el("button", {type: "button", text: "Keep it", class: "secondary"});
      dialog.append(el("div", {class: "actions"}, yes, no));
      const done = answer => { dialog.close(); dialog.remove(); resolve(answer); };
      yes.addEventListener("click", () => done(true));
      no.addEventListener("click", () => done(false));
      dialog.addEventListener("cancel", event => { event.preventDefault(); done(false); });
      document.body.append(dialog);
      dialog.showModal();
      no.focus();
    });
  }

  return {facts, lineage, parentLinks, confirmAction, fmtDuration, fmtAge, eta};
})();
