/* The submit page: a form per kind generated from its schema (AutoMLForm), the dataset and compatible-parent
 * pickers, the server's budget estimate before submitting, and every error in a summary at the top with links to
 * its field. ?kind=K&parent=N&dataset=D&example=E open the form with those chosen. */
"use strict";
const AutoMLSubmit = (() => {
  const {api, el} = AutoML;
  const ESTIMATE_DELAY_MS = 350;

  function messages(value) { return [].concat(value).map(String); }

  async function page() {
    const form = document.getElementById("submit-form");
    const kindSelect = document.getElementById("kind");
    const exampleSelect = document.getElementById("example");
    const datasetSelect = document.getElementById("dataset");
    const parentRow = document.getElementById("parent-row");
    const parentSelect = document.getElementById("parent");
    const parentNote = document.getElementById("parent-note");
    const fieldsHolder = document.getElementById("config-fields");
    const summary = document.getElementById("error-summary");
    const estimateBox = document.getElementById("estimate");
    const button = document.getElementById("submit-button");
    const query = new URLSearchParams(window.location.search);

    const [kindsR, datasetsR] = await Promise.all([api("/api/v1/job-kinds/?page_size=1000"), api("/api/v1/datasets/?page_size=1000")]);
    const kinds = kindsR.data.results, datasets = datasetsR.data.results;
    const kindNamed = name => kinds.find(k => k.name === name);
    const wantedParent = query.get("parent") || "";
    let parentJob = null;
    if (wantedParent) {
      const r = await api(`/api/v1/jobs/${encodeURIComponent(wantedParent)}/`);
      parentJob = r.ok ? r.data : null;
    }
    // The kind: the one asked for; else, with a parent, the first kind that can start from it.
    let initialKind = kindNamed(query.get("kind")) ? query.get("kind") : null;
    if (!initialKind && parentJob) {
      for (const k of kinds.filter(x => x.accepts_model)) {
        const r = await api(`/api/v1/jobs/?parent_for=${k.name}&page_size=1000`);
        if (r.ok && r.data.results.some(j => j.id === parentJob.id)) { initialKind = k.name; break; }
      }
    }
    const wantedDataset = query.get("dataset") || (parentJob && parentJob.dataset ? String(parentJob.dataset) : "");
    if (!initialKind && wantedDataset) {  // a dataset asked for: a kind that takes its modality
      const d = datasets.find(x => String(x.id) === wantedDataset);
      const k = d && kinds.find(x => x.modalities.includes(d.modality));
      if (k) initialKind = k.name;
    }
    kindSelect.value = initialKind || kindSelect.value || kinds[0].name;

    let schemaForm = null;
    let kind = null;
    let touched = false;  // no estimate errors shown at the fields before the first change

    function renderFields() {
      const values = {...kind.defaults, ...((kind.examples || {})[exampleSelect.value] || {})};
      schemaForm = AutoMLForm.build(fieldsHolder, kind.schema, values);
    }

    function renderDatasets(preferred) {
      const usable = datasets.filter(d => kind.modalities.includes(d.modality));
      const chosen = usable.find(d => String(d.id) === preferred) ? preferred
        : String((usable.find(d => d.builtin === kind.default_dataset) || usable[0] || {}).id || "");
      datasetSelect.replaceChildren(...usable.map(d => el("option", {value: d.id, selected: String(d.id) === chosen,
        text: `${d.name}${d.is_builtin ? "" : " (uploaded)"} · ${d.modality} · ${d.input_shape.join("×")} · ${d.num_classes} classes`})));
      const asked = query.get("dataset");
      const note = document.getElementById("dataset-note");
      note.textContent = asked && !usable.some(d => String(d.id) === asked)
        ? `Dataset ${asked} is not one this kind takes (${kind.modalities.join(" or ")}).` : "";
    }

    // Only parents the submit check accepts for this kind on this dataset (the API's ?parent_for=).
    let parentsAsked = 0;
    async function renderParents() {
      parentRow.hidden = !kind.accepts_model;
      if (!kind.accepts_model) { parentNote.textContent = ""; return; }
      const ask = ++parentsAsked;
      const wanted = parentSelect.value || wantedParent;
      const r = await api(`/api/v1/jobs/?parent_for=${encodeURIComponent(kind.name)}&for_dataset=${encodeURIComponent(datasetSelect.value)}&page_size=1000`);
      if (ask !== parentsAsked) return;  // a later kind or dataset change asked again
      const jobs = r.ok ? r.data.results : [];
      parentSelect.replaceChildren(el("option", {value: "", text: "none (the kind trains its own model)"}),
        ...jobs.map(j => el("option", {value: j.id, selected: String(j.id) === wanted,
          text: `#${j.id} ${j.kind}${j.name ? ` “${j.name}”` : ""} · ${(j.result && j.result.output_arch && j.result.output_arch.name) || "model"}`})));
      parentNote.textContent = jobs.length ? `${jobs.length} finished job(s) whose model this kind can start from on this dataset.`
        : "None of your finished jobs has a model this kind can start from on this dataset.";
      if (wanted && !jobs.some(j => String(j.id) === wanted))
        parentNote.textContent = `Job ${wanted} cannot be the input of ${kind.title} on this dataset. ` + parentNote.textContent;
      scheduleEstimate();
    }

    function renderKind() {
      kind = kindNamed(kindSelect.value);
      document.getElementById("kind-description").textContent = kind.description;
      const wantedExample = query.get("example");
      exampleSelect.replaceChildren(...Object.keys(kind.examples || {default: {}}).map(name =>
        el("option", {value: name, text: name, selected: name === (kind.examples[wantedExample] ? wantedExample : "default")})));
      renderFields();
      renderDatasets(datasetSelect.value || wantedDataset);
      summary.hidden = true;
      renderParents();
      scheduleEstimate();
    }

    function body() {
      const {config, errors} = schemaForm.read();
      const b = {kind: kind.name, name: form.elements.name.value, config, dataset: datasetSelect.value || null};
      if (!parentRow.hidden && parentSelect.value) b.parent = Number(parentSelect.value);
      return {body: b, errors};
    }

    // --- errors: at the field, and (on submit) all of them in the summary ---------------------------------------
    function fieldErrors(data) {
      const out = [], general = [];
      for (const [key, value] of Object.entries(data || {})) {
        if (key.startsWith("config.")) for (const m of messages(value)) out.push([key.slice(7), m]);
        else general.push([key, messages(value).join(" ")]);
      }
      return {out, general};
    }
    const TOP_FIELDS = {name: "name", dataset: "dataset", parent: "parent", kind: "kind", model: "parent"};
    function showTopErrors(general) {
      for (const f of ["name", "dataset", "parent", "kind"]) document.getElementById(`${f}-error`).textContent = "";
      const rest = [];
      for (const [key, text] of general) {
        const target = TOP_FIELDS[key] && document.getElementById(`${TOP_FIELDS[key]}-error`);
        if (target) target.textContent = text; else rest.push([key, text]);
      }
      return rest;
    }
    function showSummary(items) {
      if (!items.length) { summary.hidden = true; return; }
      const list = el("ul");
      for (const {label, text, target, path} of items) {
        const link = el("a", {href: target ? `#${target}` : "#submit-form", text: `${label}: ${text}`});
        link.addEventListener("click", event => {
          event.preventDefault();
          if (path !== undefined) schemaForm.reveal(path);
          else if (target) document.getElementById(target).focus();
        });
        list.append(el("li", {}, link));
      }
      summary.replaceChildren(el("h2", {id: "error-summary-title", text: `There ${items.length === 1 ? "is a problem" : `are ${items.length} problems`} to fix`}), list);
      summary.hidden = false;
      summary.focus();
    }
    function summaryItems(configErrors, general) {
      const items = configErrors.map(([path, text]) => ({label: schemaForm.labelOf(path), text, target: schemaForm.idOf(path), path}));
      for (const [key, text] of general) {
        const target = TOP_FIELDS[key] ? (key === "model" ? "parent" : TOP_FIELDS[key]) : null;
        items.push({label: key === "non_field_errors" || key === "config" ? "this job" : key, text, target});
      }
      return items;
    }

    // --- the estimate: the server sizes the job as a submit would, writing nothing ------------------------------
    let estimateTimer = null, estimateAsked = 0;
    function scheduleEstimate() {
      clearTimeout(estimateTimer);
      estimateBox.setAttribute("aria-busy", "true");  // until the answer for what the form holds now is shown
      estimateTimer = setTimeout(estimate, ESTIMATE_DELAY_MS);
    }
    const settled = () => estimateBox.setAttribute("aria-busy", "false");
    async function estimate() {
      if (!schemaForm) return;
      const {body: b, errors} = body();
      if (touched) schemaForm.showErrors(errors);
      if (errors.length) {
        estimateBox.className = "estimate unknown";
        estimateBox.replaceChildren(el("strong", {text: "Budget: "}), `not estimated until the marked field${errors.length > 1 ? "s are" : " is"} fixed.`);
        settled();
        return;
      }
      const ask = ++estimateAsked;
      const r = await api("/api/v1/jobs/estimate/", {method: "POST", body: b});
      if (ask !== estimateAsked) return;
      if (!r.ok) {
        const {out, general} = fieldErrors(r.data);
        schemaForm.showErrors(out);
        showTopErrors(general);
        estimateBox.className = "estimate over";
        estimateBox.replaceChildren(el("strong", {text: "Budget: "}), "the server refuses this job as it is — see the marked fields.");
        settled();
        return;
      }
      const e = r.data;
      const over = e.over_budget;
      estimateBox.className = `estimate ${over ? "over" : e.accepted ? "ok" : "over"}`;
      const parts = [el("strong", {text: "Estimated budget: "}),
        `${AutoML.fmtNumber(e.budget)} CPU-minutes of the ${AutoML.fmtNumber(e.max_budget)} a job may use`,
        over ? el("span", {class: "badge bad", text: " over the limit: the submit will refuse it"}) : el("span", {class: "badge good", text: " within the limit"}),
        el("br"), `You have ${e.active_jobs} of ${e.max_active_jobs} queued or running jobs.`];
      if (e.active_jobs >= e.max_active_jobs) parts.push(el("span", {class: "badge bad", text: " at the limit: wait for one to finish"}));
      for (const [key, value] of Object.entries(e.problems || {})) {
        if (key !== "config") parts.push(el("br"), `${key}: ${messages(value).join(" ")}`);
      }
      estimateBox.replaceChildren(...parts);
      settled();
    }

    form.addEventListener("input", event => {
      if (event.target === kindSelect || event.target === exampleSelect) return;
      touched = true;
      scheduleEstimate();
    });
    form.addEventListener("change", event => {
      if (event.target === kindSelect || event.target === exampleSelect) return;
      touched = true;
      if (event.target === datasetSelect) renderParents();
      scheduleEstimate();
    });
    kindSelect.addEventListener("change", () => {
      touched = false;
      const url = new URL(window.location.href);
      url.searchParams.set("kind", kindSelect.value);
      history.replaceState(null, "", url);
      renderKind();
    });
    exampleSelect.addEventListener("change", () => { renderFields(); scheduleEstimate(); });

    form.addEventListener("submit", async event => {
      event.preventDefault();
      touched = true;
      const {body: b, errors} = body();
      schemaForm.showErrors(errors);
      showTopErrors([]);
      if (errors.length) { showSummary(summaryItems(errors, [])); return; }  // nothing is sent
      button.disabled = true;
      const r = await api("/api/v1/jobs/", {method: "POST", body: b});
      button.disabled = false;
      if (r.ok) { window.location.href = `/jobs/${r.data.id}/`; return; }
      const {out, general} = r.data ? fieldErrors(r.data) : {out: [], general: [["non_field_errors", `HTTP ${r.status}`]]};
      const rest = schemaForm.showErrors(out);
      showTopErrors(general);
      showSummary(summaryItems([...out.filter(e => !rest.includes(e)), ...rest], general));
    });

    renderKind();
    // The kinds, datasets and fields are in (the browser tests wait for it). Not form.dataset: the form's field
    // named "dataset" shadows it.
    form.setAttribute("data-ready", "1");
  }

  return {page};
})();
