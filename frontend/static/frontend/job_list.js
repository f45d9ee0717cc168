/* The job list: filters and page kept in the URL (?kind=&status=&page=, so a reload or a shared link shows the
 * same list), pages from the API, a best figure per job, live while anything runs, and a selection to compare. */
"use strict";
const AutoMLJobList = (() => {
  const {api, el, ACTIVE} = AutoML;
  const COLUMNS = ["Select", "#", "Name", "Kind", "Status", "Progress", "Best", "Age"];
  const PAGE_SIZE = 20;

  /** The job's first headline: its value, then what it is. */
  function bestFigure(job) {
    const first = job.headline;  // the list's rows carry the result's first headline, not the result
    if (!first) return el("td", {class: "best-cell", text: "—"});
    let value = typeof first.value === "number" ? AutoML.fmtNumber(first.value) : String(first.value);
    if (first.unit) value += ["%", "×"].includes(first.unit) ? first.unit : ` ${first.unit}`;
    return el("td", {class: "best-cell"}, el("span", {class: "best-value", text: value}),
              el("span", {class: "best-label", text: first.label}));
  }

  function page() {
    const tbody = document.querySelector("#jobs tbody");
    const form = document.getElementById("filters");
    const pager = document.getElementById("job-pages");
    const compareButton = document.getElementById("compare-selected");
    const selected = new Set();  // kept while paging and filtering
    let timer = null;

    function state() {
      const q = new URLSearchParams(window.location.search);
      return {kind: q.get("kind") || "", status: q.get("status") || "", page: Math.max(1, Number(q.get("page")) || 1)};
    }
    function setState(next, push) {
      const q = new URLSearchParams();
      if (next.kind) q.set("kind", next.kind);
      if (next.status) q.set("status", next.status);
      if (next.page > 1) q.set("page", String(next.page));
      const url = `${window.location.pathname}${q.toString() ? `?${q}` : ""}`;
      if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
      refresh();
    }
    function syncForm() {
      const s = state();
      form.elements.kind.value = s.kind;
      form.elements.status.value = s.status;
    }

    function updateCompare() {
      compareButton.textContent = `Compare selected (${selected.size})`;
      compareButton.setAttribute("aria-disabled", selected.size < 2 ? "true" : "false");
      compareButton.classList.toggle("disabled", selected.size < 2);
      compareButton.href = `/compare/?jobs=${[...selected].join(",")}`;
    }
    compareButton.addEventListener("click", event => { if (selected.size < 2) event.preventDefault(); });

    function row(job) {
      const box = el("input", {type: "checkbox", value: job.id, checked: selected.has(String(job.id)),
                               "aria-label": `select job ${job.id} to compare`});
      box.addEventListener("change", () => {
        if (box.checked) selected.add(String(job.id)); else selected.delete(String(job.id));
        updateCompare();
      });
      const cells = [
        el("td", {}, box),
        el("td", {}, el("a", {href: `/jobs/${job.id}/`, text: `#${job.id}`})),
        el("td", {text: job.name || "—"}), el("td", {text: job.kind}),
        el("td", {}, el("span", {class: `status ${job.status}`, text: job.status})),
        el("td", {}, el("progress", {max: "1", value: String(job.progress), "aria-label": `job ${job.id} progress`}),
           ` ${Math.round(job.progress * 100)}%`),
        bestFigure(job),
        el("td", {text: AutoMLJob.fmtAge(job.created_at), title: AutoML.fmtDate(job.created_at)}),
      ];
      cells.forEach((td, i) => td.setAttribute("data-label", COLUMNS[i]));
      return el("tr", {"data-job-id": job.id}, ...cells);
    }

    function message(text, link) {
      return el("tr", {class: "empty"}, el("td", {colspan: String(COLUMNS.length)}, text, link || ""));
    }

    function pagerLinks(s, count, size) {
      const pages = Math.max(1, Math.ceil(count / size));
      const link = (text, n, label) => {
        if (n < 1 || n > pages) return el("span", {class: "page disabled", text, "aria-disabled": "true"});
        const q = new URLSearchParams(window.location.search);
        if (n > 1) q.set("page", String(n)); else q.delete("page");
        const a = el("a", {class: "page", href: `?${q}`, text, "aria-label": label, "aria-current": n === s.page ? "page" : undefined});
        a.addEventListener("click", event => { event.preventDefault(); setState({...s, page: n}, true); });
        return a;
      };
      const numbers = [...new Set([1, s.page - 1, s.page, s.page + 1, pages])].filter(n => n >= 1 && n <= pages).sort((a, b) => a - b);
      const items = [link("‹ Previous", s.page - 1, "previous page")];
      let last = 0;
      for (const n of numbers) {
        if (n > last + 1) items.push(el("span", {class: "gap", text: "…"}));
        items.push(link(String(n), n, `page ${n}`));
        last = n;
      }
      items.push(link("Next ›", s.page + 1, "next page"), el("span", {class: "help page-of", text: ` page ${s.page} of ${pages} · ${count} job${count === 1 ? "" : "s"}`}));
      pager.replaceChildren(...items);
      pager.hidden = pages <= 1;
    }

    // The rows are redrawn on every poll, so a live region per cell would read the whole table each time: one
    // polite region says what changed (a job's status), not what stayed.
    const seenStatus = new Map();
    function announce(jobs) {
      const changed = jobs.filter(j => seenStatus.has(j.id) && seenStatus.get(j.id) !== j.status);
      for (const j of jobs) seenStatus.set(j.id, j.status);
      if (changed.length) {
        document.getElementById("jobs-live").textContent =
          changed.map(j => `Job ${j.id}${j.name ? ` (${j.name})` : ""} is ${j.status}.`).join(" ");
      }
    }

    async function refresh() {
      clearTimeout(timer);
      const s = state();
      syncForm();
      const params = new URLSearchParams({page_size: String(PAGE_SIZE)});
      if (s.kind) params.set("kind", s.kind);
      if (s.status) params.set("status", s.status);
      if (s.page > 1) params.set("page", String(s.page));
      const r = await api(`/api/v1/jobs/?${params}`);
      if (r.status === 404 && s.page > 1) { setState({...s, page: 1}, false); return; }  // past the last page
      if (!r.ok) { tbody.replaceChildren(message("Could not load jobs.")); return; }
      const jobs = r.data.results;
      const filtered = s.kind || s.status;
      if (jobs.length) tbody.replaceChildren(...jobs.map(row));
      else if (filtered) {
        const clear = el("a", {href: window.location.pathname, text: "Show all jobs"});
        clear.addEventListener("click", event => { event.preventDefault(); setState({kind: "", status: "", page: 1}, true); });
        tbody.replaceChildren(message("No jobs match these filters. ", clear));
      } else {
        tbody.replaceChildren(message("No jobs yet. ", el("a", {href: "/submit/", text: "Submit one"})));
      }
      pagerLinks(s, r.data.count, PAGE_SIZE);
      announce(jobs);
      if (jobs.some(j => ACTIVE.has(j.status))) timer = setTimeout(refresh, 2000);
    }

    form.addEventListener("change", () => setState({kind: form.elements.kind.value, status: form.elements.status.value, page: 1}, true));
    form.addEventListener("submit", event => event.preventDefault());
    window.addEventListener("popstate", refresh);
    updateCompare();
    refresh();
  }

  return {page};
})();
