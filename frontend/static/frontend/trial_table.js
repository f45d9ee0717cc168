/* The job page's trial table: sorted, filtered and paged by the server (GET /jobs/{id}/trials/?ordering=&state=
 * &page=), its value columns headed with the job's objectives, the best trial marked; rows are updated in place,
 * so a poll does not redraw the table (nor lose the reader's place or focus). */
"use strict";
const AutoMLTrials = (() => {
  const {api, el, fmtValue} = AutoML;
  const STATES = ["complete", "pruned", "failed", "running"];
  const ARROW = {maximize: ["▲", "higher is better"], minimize: ["▼", "lower is better"]};

  function fmtNumberish(v) {
    if (v === null || v === undefined) return "—";
    return typeof v === "number" ? AutoML.fmtNumber(v) : fmtValue(v);
  }

  function create(section, jobId) {
    const table = section.querySelector("table");
    const thead = table.querySelector("thead"), tbody = table.querySelector("tbody");
    const stateSelect = section.querySelector("#trial-state");
    const orderSelect = section.querySelector("#trial-order");
    const sizeSelect = section.querySelector("#trial-page-size");
    const pager = section.querySelector("#trial-pages");
    const count = section.querySelector("#trial-count");
    const bestLine = section.querySelector("#trial-best");
    const rows = new Map();  // trial number -> its <tr>
    let objectives = [], columnsKey = "", page = 1, lastJob = null, metricKeys = new Set(), busy = false, again = false;

    stateSelect.replaceChildren(el("option", {value: "", text: "any"}), ...STATES.map(s => el("option", {value: s, text: s})));

    function bestFirst(i) { return (objectives[i] || {}).direction === "minimize" ? `values.${i}` : `-values.${i}`; }
    function objectiveName(i) { const o = objectives[i]; return o ? o.name : `value ${i + 1}`; }

    function orderOptions() {
      const options = [["", "trial number"], ["-number", "trial number, newest first"]];
      objectives.forEach((o, i) => {
        options.push([bestFirst(i), `${o.name}, best first`]);
        options.push([bestFirst(i).startsWith("-") ? `values.${i}` : `-values.${i}`, `${o.name}, worst first`]);
      });
      for (const k of [...metricKeys].sort()) {
        options.push([`-metrics.${k}`, `metric ${k}, highest first`], [`metrics.${k}`, `metric ${k}, lowest first`]);
      }
      options.push(["-duration_seconds", "duration, longest first"], ["duration_seconds", "duration, shortest first"]);
      const chosen = orderSelect.value;
      const key = options.map(o => o[0]).join("|");
      if (orderSelect.dataset.key !== key) {
        orderSelect.replaceChildren(...options.map(([value, text]) => el("option", {value, text, selected: value === chosen})));
        orderSelect.dataset.key = key;
      }
    }

    function sortButton(label, key, titleText) {
      const b = el("button", {type: "button", class: "sort", "data-key": key, title: titleText || `sort by ${label}`}, label);
      b.addEventListener("click", () => {
        const current = orderSelect.value;
        // First click: the way that is better (or, for a plain column, descending); a second click flips it.
        const preferred = key.startsWith("values.") ? bestFirst(Number(key.split(".")[1])) : key === "number" ? "number" : `-${key}`;
        const flipped = preferred.startsWith("-") ? preferred.slice(1) : `-${preferred}`;
        const next = current === preferred || (key === "number" && current === "") ? flipped : preferred;
        orderSelect.value = next === "number" ? "" : next;
        page = 1;
        refresh();
      });
      return b;
    }

    function header(width) {
      const key = JSON.stringify([objectives, width]);
      if (key === columnsKey) return;
      columnsKey = key;
      const cells = [el("th", {scope: "col", "data-key": "number"}, sortButton("#", "number", "sort by trial number")),
                     el("th", {scope: "col", "data-key": "state"}, sortButton("State", "state"))];
      for (let i = 0; i < width; i++) {
        const o = objectives[i] || {};
        const arrow = ARROW[o.direction];
        const label = `${objectiveName(i)}${o.unit ? ` (${o.unit})` : ""}`;
        cells.push(el("th", {scope: "col", class: "num", "data-key": `values.${i}`},
          sortButton(arrow ? `${label} ${arrow[0]}` : label, `values.${i}`, arrow ? `${label}: ${arrow[1]}; sort by it` : undefined),
          arrow ? el("span", {class: "sr-only", text: ` (${arrow[1]})`}) : ""));
      }
      cells.push(el("th", {scope: "col", text: "Params"}),
                 el("th", {scope: "col", class: "num", "data-key": "duration_seconds"}, sortButton("Duration (s)", "duration_seconds")));
      thead.replaceChildren(el("tr", {}, ...cells));
      rows.clear();
      tbody.replaceChildren();
    }

    function markSort() {
      const order = orderSelect.value || "number";
      const key = order.replace(/^-/, "");
      for (const th of thead.querySelectorAll("th[data-key]")) {
        if (th.dataset.key === key) th.setAttribute("aria-sort", order.startsWith("-") ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      }
    }

    function setText(td, text) { if (td.textContent !== text) td.textContent = text; }

    function rowFor(t, width, labels) {
      let tr = rows.get(t.number);
      if (!tr) {
        tr = el("tr", {"data-trial": t.number});
        const cells = ["#", "State", ...labels, "Params", "Duration (s)"];
        cells.forEach((label, i) => tr.append(el("td", {"data-label": label, class: i >= 2 && i < 2 + width || i === cells.length - 1 ? "num" : undefined})));
        rows.set(t.number, tr);
      }
      const tds = tr.children;
      setText(tds[0], String(t.number));
      setText(tds[1], t.state);
      for (let i = 0; i < width; i++) setText(tds[2 + i], fmtNumberish((t.values || [])[i]));
      setText(tds[2 + width], fmtValue(t.params));
      setText(tds[3 + width], t.duration_seconds === null || t.duration_seconds === undefined ? "" : t.duration_seconds.toFixed(2));
      return tr;
    }

    function pagerLinks(total, size) {
      const pages = Math.max(1, Math.ceil(total / size));
      if (page > pages) page = pages;
      const go = n => { page = n; refresh(); };
      const button = (text, n, label, current = false) => {
        const b = el("button", {type: "button", class: current ? "page current" : "page", text, "aria-label": label,
                                "aria-current": current ? "page" : undefined, disabled: n < 1 || n > pages || current});
        b.addEventListener("click", () => go(n));
        return b;
      };
      const numbers = [...new Set([1, page - 2, page - 1, page, page + 1, page + 2, pages])].filter(n => n >= 1 && n <= pages).sort((a, b) => a - b);
      const items = [button("‹ Previous", page - 1, "previous page")];
      let last = 0;
      for (const n of numbers) {
        if (n > last + 1) items.push(el("span", {class: "gap", text: "…"}));
        items.push(button(String(n), n, `page ${n}`, n === page));
        last = n;
      }
      items.push(button("Next ›", page + 1, "next page"), el("span", {class: "help page-of", text: ` page ${page} of ${pages}`}));
      const key = `${page}/${pages}`;
      if (pager.dataset.key !== key) { pager.replaceChildren(...items); pager.dataset.key = key; }
      pager.hidden = pages <= 1;
    }

    /** The best complete trial by the first objective: from the page when it holds every trial, else asked for. */
    async function fetchBest(page) {
      if (!objectives.length) return null;
      if (!stateSelect.value && page.count <= page.results.length) {
        const sign = objectives[0].direction === "minimize" ? -1 : 1;
        const scored = page.results.filter(t => t.state === "complete" && t.values && typeof t.values[0] === "number");
        const beats = (t, best) => sign * t.values[0] > sign * best.values[0]
          || (t.values[0] === best.values[0] && t.number < best.number);  // ties: the first, as the server orders
        return scored.reduce((best, t) => (!best || beats(t, best) ? t : best), null);
      }
      const r = await api(`/api/v1/jobs/${jobId}/trials/?state=complete&ordering=${encodeURIComponent(bestFirst(0))}&page_size=1`);
      return r.ok && r.data.results.length && r.data.results[0].values ? r.data.results[0] : null;
    }

    async function refresh(job) {
      if (job) { lastJob = job; objectives = job.objectives || []; }
      if (busy) { again = true; return; }
      busy = true;
      try {
        orderOptions();
        const size = Number(sizeSelect.value) || 25;
        const params = new URLSearchParams({page: String(page), page_size: String(size)});
        if (orderSelect.value) params.set("ordering", orderSelect.value);
        if (stateSelect.value) params.set("state", stateSelect.value);
        const r = await api(`/api/v1/jobs/${jobId}/trials/?${params}`);
        if (r.status === 404 && page > 1) { page = 1; again = true; return; }  // the page emptied under us
        if (!r.ok) return;
        const best = await fetchBest(r.data);
        const trials = r.data.results;
        for (const t of trials) for (const [k, v] of Object.entries(t.metrics || {})) if (typeof v === "number") metricKeys.add(k);
        const width = Math.max(objectives.length, ...trials.map(t => (t.values || []).length));
        header(width);
        orderOptions();
        markSort();
        const labels = Array.from({length: width}, (_, i) => objectiveName(i));
        const wanted = trials.map(t => rowFor(t, width, labels));
        // Rows leave or move only where they must.
        for (const [number, tr] of rows) if (!wanted.includes(tr)) { tr.remove(); rows.delete(number); }
        wanted.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
        for (const tr of wanted) {
          const isBest = !!best && Number(tr.dataset.trial) === best.number;
          tr.classList.toggle("best", isBest);
          const first = tr.children[0];
          const badge = first.querySelector(".best-badge");
          if (isBest && !badge) first.append(el("span", {class: "best-badge", text: " ★ best"}));
          if (!isBest && badge) badge.remove();
        }
        if (!trials.length) {
          if (!tbody.querySelector(".no-trials")) tbody.append(el("tr", {class: "no-trials"}, el("td", {colspan: String(width + 4),
            text: stateSelect.value ? `No ${stateSelect.value} trials.` : "No trials yet."})));
        } else {
          tbody.querySelector(".no-trials")?.remove();
        }
        setText(count, `(${r.data.count}${stateSelect.value ? ` ${stateSelect.value}` : ""})`);
        setText(bestLine, best ? `Best so far: trial ${best.number}, ${objectives.map((o, i) =>
          `${o.name} ${fmtNumberish(best.values[i])}${o.unit && o.unit !== "fraction" ? ` ${o.unit}` : ""}`).join(", ")}` : "");
        pagerLinks(r.data.count, size);
      } finally {
        busy = false;
        if (again) { again = false; refresh(); }
      }
    }

    for (const control of [stateSelect, orderSelect, sizeSelect]) control.addEventListener("change", () => { page = 1; refresh(); });
    return {refresh, get job() { return lastJob; }};
  }

  return {create};
})();
