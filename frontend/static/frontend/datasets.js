/* The datasets page: upload a .npz or CSV (the API checks it; its messages are shown at the field), list the
 * built-in and uploaded datasets with their shape and class balance, and start a job on one. */
"use strict";
const AutoMLDatasets = (() => {
  const {api, el} = AutoML;
  const SUFFIXES = [".npz", ".csv"];

  function fmtBytes(n) {
    if (!n) return "—";
    const units = ["bytes", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  /** Class balance as bars with their counts written out (readable without the bars or their colour). */
  function balance(d) {
    const counts = d.class_counts || [];
    if (!counts.length) return el("span", {class: "help", text: "not counted"});
    const most = Math.max(...counts), least = Math.min(...counts);
    const list = el("ol", {class: "balance", start: "0", "aria-label": `samples per class of ${d.name}`});
    counts.forEach((c, i) => list.append(el("li", {title: `class ${i}: ${c}`},
      el("span", {class: "bar", style: `width: ${most ? Math.max(2, Math.round(100 * c / most)) : 0}%`}),
      el("span", {class: "count", text: `class ${i}: ${c}`}))));
    const ratio = least ? (most / least).toFixed(2) : "∞";
    return el("div", {}, el("p", {class: "help", text: `largest class / smallest class: ${ratio}`}), list);
  }

  function page() {
    const tbody = document.querySelector("#datasets tbody");
    const form = document.getElementById("upload-form");
    const fileInput = document.getElementById("upload-file");
    const status = document.getElementById("upload-status");
    let highlight = null;

    function row(d) {
      const use = el("a", {href: `/submit/?dataset=${d.id}`, class: "button secondary small", text: "Use in a job",
                           "aria-label": `use ${d.name} in a new job`});
      const actions = el("td", {"data-label": "Actions"}, use);
      if (!d.is_builtin) {
        const del = el("button", {type: "button", class: "secondary small", text: "Delete", "aria-label": `delete ${d.name}`});
        del.addEventListener("click", async () => {
          if (!(await AutoMLJob.confirmAction(`Delete the dataset “${d.name}” and its file? Finished jobs keep their results.`, "Delete it"))) return;
          const r = await api(`/api/v1/datasets/${d.id}/`, {method: "DELETE"});
          status.textContent = r.ok ? `Deleted “${d.name}”.` : Object.values(r.data || {}).flat().join(" ");
          refresh();
        });
        actions.append(" ", del);
      }
      const inspect = el("details", {class: "inspect"}, el("summary", {text: `${d.num_classes} classes`}), balance(d));
      const cells = [
        ["Name", el("td", {}, el("strong", {text: d.name}), d.description ? el("small", {class: "help", text: d.description}) : "")],
        ["Source", el("td", {text: d.is_builtin ? "built-in" : "uploaded"})],
        ["Modality", el("td", {text: d.modality})],
        ["Shape", el("td", {text: `[${d.input_shape.join(", ")}]`, "data-shape": d.input_shape.join("x")})],
        ["Samples", el("td", {class: "num", text: d.num_samples === null ? "—" : AutoML.fmtNumber(d.num_samples)})],
        ["Class balance", el("td", {}, inspect)],
        ["Size", el("td", {class: "num", text: fmtBytes(d.size_bytes)})],
      ];
      for (const [label, td] of cells) td.setAttribute("data-label", label);
      return el("tr", {"data-dataset": d.id, class: String(d.id) === highlight ? "new" : undefined}, ...cells.map(c => c[1]), actions);
    }

    async function refresh() {
      const r = await api("/api/v1/datasets/?page_size=1000");
      if (!r.ok) { tbody.replaceChildren(el("tr", {}, el("td", {colspan: "8", text: "Could not load the datasets."}))); return; }
      const rows = r.data.results.sort((a, b) => Number(a.is_builtin) - Number(b.is_builtin) || b.id - a.id).map(row);
      tbody.replaceChildren(...rows);
      const row0 = highlight && tbody.querySelector(`tr[data-dataset="${highlight}"] details`);
      if (row0) row0.open = true;
    }

    function showErrors(data, httpStatus) {
      const fields = {file: "upload-file-error", name: "upload-name-error"};
      for (const id of Object.values(fields)) document.getElementById(id).textContent = "";
      const rest = [];
      for (const [key, value] of Object.entries(data || {detail: `HTTP ${httpStatus}`})) {
        const text = [].concat(value).join(" ");
        if (fields[key]) document.getElementById(fields[key]).textContent = text; else rest.push(text);
      }
      document.getElementById("upload-error").textContent = rest.join(" ");
      fileInput.setAttribute("aria-invalid", data && data.file ? "true" : "false");
    }

    form.addEventListener("submit", async event => {
      event.preventDefault();
      status.textContent = "";
      const file = fileInput.files[0];
      if (!file) { showErrors({file: "choose a file to upload"}); fileInput.focus(); return; }
      if (!SUFFIXES.some(s => file.name.toLowerCase().endsWith(s))) {
        showErrors({file: "upload a .npz (arrays x, y) or a .csv (last column: label)"});  // the API's own words
        fileInput.focus();
        return;
      }
      const body = new FormData(form);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      status.textContent = `Uploading ${file.name}…`;
      const response = await fetch("/api/v1/datasets/", {method: "POST", body, credentials: "same-origin",
        headers: {"X-CSRFToken": AutoML.csrfToken(), "Accept": "application/json"}});
      button.disabled = false;
      const data = await response.json().catch(() => null);
      if (!response.ok) { status.textContent = ""; showErrors(data, response.status); fileInput.focus(); return; }
      showErrors({});
      highlight = String(data.id);
      form.reset();
      status.replaceChildren(`Uploaded “${data.name}”: ${data.num_samples} samples of shape [${data.input_shape.join(", ")}], `
        + `${data.num_classes} classes (${data.modality}). `, el("a", {href: `/submit/?dataset=${data.id}`, text: "Use it in a job"}));
      await refresh();
    });
    refresh();
  }

  return {page};
})();
