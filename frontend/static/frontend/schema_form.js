/* A form generated from a job kind's JSON Schema, with client-side checks that mirror the schema's.
 *
 * Every property becomes a labelled field: numbers (empty means null where the schema allows null), choice lists
 * (select), sets of choices (checkboxes), booleans, lists (one input per item), nested objects (a fieldset, with
 * an on/off switch when null is allowed) and, for anything else, a JSON text field. Properties flagged
 * "x-advanced": true fold under "Advanced options"; both parts keep the schema's order.
 *
 * The checks say what jsonschema would say ("0 is less than the minimum of 1"), so a message reads the same
 * whether the browser or the server found it; the server's own (cross-field checks, the budget) are shown at the
 * same place with showErrors(). */
"use strict";
const AutoMLForm = (() => {
  const {el} = AutoML;

  // --- the schema's own checks, for the subset of JSON Schema the kinds use ---------------------------------
  function types(schema) { return [].concat(schema.type || []); }
  function show(v) { return typeof v === "string" ? `'${v}'` : JSON.stringify(v); }
  function typeOf(v) {
    if (v === null) return "null";
    if (Array.isArray(v)) return "array";
    if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
    return typeof v;  // string, boolean, object
  }
  function fitsType(v, type) {
    const t = typeOf(v);
    return t === type || (type === "number" && t === "integer");
  }

  /** Messages for ``value`` against ``schema``, as [path, message] pairs; path is "a.b" like the API's keys. */
  function check(schema, value, path = "") {
    const out = [];
    const say = message => out.push([path, message]);
    const allowed = types(schema);
    if (allowed.length && !allowed.some(t => fitsType(value, t))) {
      say(`${show(value)} is not of type ${allowed.map(t => `'${t}'`).join(", ")}`);
      return out;
    }
    if (schema.enum && !schema.enum.some(e => JSON.stringify(e) === JSON.stringify(value))) {
      say(`${show(value)} is not one of ${JSON.stringify(schema.enum)}`);
    }
    if (typeof value === "number") {
      if (schema.minimum !== undefined && value < schema.minimum) say(`${value} is less than the minimum of ${schema.minimum}`);
      if (schema.maximum !== undefined && value > schema.maximum) say(`${value} is greater than the maximum of ${schema.maximum}`);
      if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum)
        say(`${value} is less than or equal to the minimum of ${schema.exclusiveMinimum}`);
      if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum)
        say(`${value} is greater than or equal to the maximum of ${schema.exclusiveMaximum}`);
    }
    if (typeof value === "string") {
      const length = [...value].length;
      if (schema.minLength !== undefined && length < schema.minLength)
        say(schema.minLength === 1 ? `${show(value)} should be non-empty` : `${show(value)} is too short`);
      if (schema.maxLength !== undefined && length > schema.maxLength) say(`${show(value)} is too long`);
      if (schema.pattern && !new RegExp(schema.pattern, "u").test(value)) say(`${show(value)} does not match ${show(schema.pattern)}`);
    }
    if (Array.isArray(value)) {
      if (schema.minItems !== undefined && value.length < schema.minItems)
        say(schema.minItems === 1 ? "[] should be non-empty" : `${show(value)} is too short`);
      if (schema.maxItems !== undefined && value.length > schema.maxItems) say(`${show(value)} is too long`);
      if (schema.uniqueItems && new Set(value.map(v => JSON.stringify(v))).size !== value.length)
        say(`${show(value)} has non-unique elements`);
      if (schema.items) value.forEach((item, i) => out.push(...check(schema.items, item, path ? `${path}.${i}` : String(i))));
    }
    if (typeOf(value) === "object") {
      for (const key of schema.required || []) if (!(key in value)) say(`'${key}' is a required property`);
      const props = schema.properties || {};
      for (const [key, v] of Object.entries(value)) {
        if (props[key]) out.push(...check(props[key], v, path ? `${path}.${key}` : key));
        else if (schema.additionalProperties === false) say(`Additional properties are not allowed (${show(key)} was unexpected)`);
      }
    }
    return out;
  }

  // --- fields ------------------------------------------------------------------------------------------------
  function labelText(name, prop) {
    const bounds = [];
    const t = types(prop);
    if (prop.minimum !== undefined) bounds.push(`min ${prop.minimum}`);
    if (prop.exclusiveMinimum !== undefined) bounds.push(`> ${prop.exclusiveMinimum}`);
    if (prop.maximum !== undefined) bounds.push(`max ${prop.maximum}`);
    if (prop.exclusiveMaximum !== undefined) bounds.push(`< ${prop.exclusiveMaximum}`);
    if (t.includes("null") && !t.includes("object")) bounds.push("empty: none");
    return name.replaceAll("_", " ") + (bounds.length ? ` (${bounds.join(", ")})` : "");
  }
  const isNumeric = prop => types(prop).some(t => t === "integer" || t === "number");
  const parseNumber = (text, integer) => {
    const s = text.trim();
    if (s === "") return {empty: true};
    const v = Number(s);
    if (!Number.isFinite(v)) return {error: `${show(s)} is not a number`};
    if (integer && !Number.isInteger(v)) return {error: `${v} is not of type 'integer'`};
    return {value: v};
  };

  /** One field: {path, node, read() -> {value} | {error}, setError(text), focus(), advanced}. */
  function field(path, prop, value, id) {
    const name = path[path.length - 1];
    const t = types(prop);
    const errorId = `${id}-error`, helpId = `${id}-help`;
    const help = el("small", {class: "help", id: helpId, text: prop.description || ""});
    const error = el("small", {class: "error field-error", id: errorId});
    const describedBy = `${helpId} ${errorId}`;
    const wrap = el("div", {class: "field", "data-field": path.join(".")});
    let read, focusable;

    if (t.includes("array") && prop.items && prop.items.enum) {
      // a set of choices: one checkbox each
      const group = el("fieldset", {class: "choices-field", id, "aria-describedby": describedBy},
        el("legend", {text: labelText(name, prop)}));
      const row = el("span", {class: "choices", "data-choices": "1"});
      for (const option of prop.items.enum) {
        const box = el("input", {type: "checkbox", id: `${id}-${option}`, value: String(option),
                                 checked: (value || []).some(v => String(v) === String(option))});
        row.append(el("label", {class: "choice", for: `${id}-${option}`}, box, ` ${option}`));
      }
      group.append(row, help, error);
      wrap.append(group);
      read = () => ({value: prop.items.enum.filter(o => row.querySelector(`input[value="${CSS.escape(String(o))}"]`).checked)});
      focusable = () => row.querySelector("input");
    } else if (t.includes("array") && prop.items && (isNumeric(prop.items) || types(prop.items).includes("string"))) {
      ({read, focusable} = listField(wrap, id, name, prop, value || [], help, error, describedBy));
    } else if (prop.enum) {
      const select = el("select", {id, name: path.join("."), "aria-describedby": describedBy});
      if (t.includes("null")) select.append(el("option", {value: "", text: "none", selected: value === null}));
      prop.enum.forEach((option, i) => select.append(el("option", {value: String(i), text: String(option),
                                                                   selected: option === value})));
      wrap.append(el("label", {for: id, text: labelText(name, prop)}), select, help, error);
      read = () => ({value: select.value === "" ? null : prop.enum[Number(select.value)]});
      focusable = () => select;
    } else if (t.includes("boolean") && t.length === 1) {
      const box = el("input", {id, name: path.join("."), type: "checkbox", checked: !!value, "aria-describedby": describedBy});
      wrap.append(el("label", {class: "choice inline-check", for: id}, box, ` ${labelText(name, prop)}`), help, error);
      read = () => ({value: box.checked});
      focusable = () => box;
    } else if (isNumeric(prop) && !t.includes("object") && !t.includes("array")) {
      const integer = !t.includes("number");
      const input = el("input", {id, name: path.join("."), type: "number", value: value ?? "", step: integer ? "1" : "any",
        min: prop.minimum ?? prop.exclusiveMinimum, max: prop.maximum ?? prop.exclusiveMaximum,
        placeholder: t.includes("null") ? "none" : undefined, inputmode: integer ? "numeric" : "decimal",
        "aria-describedby": describedBy});
      wrap.append(el("label", {for: id, text: labelText(name, prop)}), input, help, error);
      read = () => {
        if (input.validity.badInput) return {error: "not a number"};
        const parsed = parseNumber(input.value, integer);
        if (parsed.empty) return t.includes("null") ? {value: null} : {error: "a number is required"};
        return parsed;
      };
      focusable = () => input;
    } else if (t.includes("object") && prop.properties) {
      ({read, focusable} = objectField(wrap, path, id, name, prop, value, help, error));
    } else if (t.includes("string") && t.length <= 2 && !t.includes("object")) {
      const input = el("input", {id, name: path.join("."), value: value ?? "", maxlength: prop.maxLength,
                                 placeholder: t.includes("null") ? "none" : undefined, "aria-describedby": describedBy});
      wrap.append(el("label", {for: id, text: labelText(name, prop)}), input, help, error);
      read = () => ({value: input.value === "" && t.includes("null") ? null : input.value});
      focusable = () => input;
    } else {
      const input = el("textarea", {id, name: path.join("."), rows: "2", class: "json", "aria-describedby": describedBy});
      input.value = JSON.stringify(value ?? null);
      wrap.append(el("label", {for: id, text: `${labelText(name, prop)} (JSON)`}), input, help, error);
      read = () => { try { return {value: JSON.parse(input.value)}; } catch (e) { return {error: `not JSON: ${e.message}`}; } };
      focusable = () => input;
    }
    const setError = text => {
      error.textContent = text || "";
      wrap.classList.toggle("invalid", !!text);
      const target = focusable();
      if (target) target.setAttribute("aria-invalid", text ? "true" : "false");
    };
    return {path: path.join("."), node: wrap, read, setError, focus: () => focusable() && focusable().focus(),
            focusId: () => (focusable() ? focusable().id : id), advanced: prop["x-advanced"] === true, prop};
  }

  function listField(wrap, id, name, prop, values, help, error, describedBy) {
    const items = prop.items;
    const integer = types(items).includes("integer");
    const numeric = isNumeric(items);
    const group = el("fieldset", {class: "list-field", id, "aria-describedby": describedBy},
      el("legend", {text: `${labelText(name, prop)} — a list`}));
    const list = el("ol", {class: "list-items"});
    const add = el("button", {type: "button", class: "secondary small", text: "Add an item",
                              "aria-label": `add an item to ${name.replaceAll("_", " ")}`});
    let counter = 0;
    function renumber() {
      [...list.children].forEach((li, i) => {
        li.querySelector("label").textContent = `${name.replaceAll("_", " ")} item ${i + 1}`;
        li.querySelector("button").setAttribute("aria-label", `remove item ${i + 1} of ${name.replaceAll("_", " ")}`);
      });
      add.disabled = items && prop.maxItems !== undefined && list.children.length >= prop.maxItems;
    }
    function addItem(v) {
      const itemId = `${id}-${counter++}`;
      const input = el("input", {id: itemId, type: numeric ? "number" : "text", value: v ?? "",
        step: numeric ? (integer ? "1" : "any") : undefined, min: items.minimum ?? items.exclusiveMinimum,
        max: items.maximum ?? items.exclusiveMaximum, inputmode: numeric ? (integer ? "numeric" : "decimal") : undefined,
        class: "list-item"});
      const remove = el("button", {type: "button", class: "secondary small", text: "✕"});
      const li = el("li", {}, el("label", {for: itemId, class: "sr-only"}), input, remove);
      remove.addEventListener("click", () => {
        li.remove(); renumber();
        list.dispatchEvent(new Event("input", {bubbles: true}));
        (list.querySelector("input") || add).focus();
      });
      list.append(li);
      renumber();
      return input;
    }
    for (const v of values) addItem(v);
    add.addEventListener("click", () => {
      addItem("").focus();
      list.dispatchEvent(new Event("input", {bubbles: true}));
    });
    group.append(list, add, help, error);
    wrap.append(group);
    const read = () => {
      const out = [];
      for (const [i, input] of [...list.querySelectorAll("input")].entries()) {
        if (!numeric) { out.push(input.value); continue; }
        if (input.validity.badInput) return {error: `item ${i + 1}: not a number`};
        const parsed = parseNumber(input.value, integer);
        if (parsed.empty) return {error: `item ${i + 1} is empty: fill it or remove it`};
        if (parsed.error) return {error: `item ${i + 1}: ${parsed.error}`};
        out.push(parsed.value);
      }
      return {value: out};
    };
    return {read, focusable: () => list.querySelector("input") || add};
  }

  function objectField(wrap, path, id, name, prop, value, help, error) {
    const nullable = types(prop).includes("null");
    const group = el("fieldset", {class: "object-field", id: `${id}-group`}, el("legend", {text: labelText(name, prop)}));
    const children = Object.entries(prop.properties).map(([key, sub]) =>
      field([...path, key], sub, (value || {})[key] ?? sub.default, `${id}-${key}`));
    const inner = el("div", {class: "object-fields"}, ...children.map(c => c.node));
    let toggle = null;
    if (nullable) {
      toggle = el("input", {type: "checkbox", id, checked: value !== null && value !== undefined});
      group.append(el("label", {class: "choice inline-check", for: id}, toggle, ` set ${name.replaceAll("_", " ")} (off: none)`));
      inner.hidden = !toggle.checked;
      toggle.addEventListener("change", () => { inner.hidden = !toggle.checked; });
    }
    group.append(inner, help, error);
    wrap.append(group);
    wrap.subfields = children;
    const read = () => {
      if (toggle && !toggle.checked) return {value: null};
      const out = {};
      for (const c of children) {
        const r = c.read();
        if (r.error) return {error: `${c.path.split(".").pop()}: ${r.error}`};
        if (r.value !== null || types(c.prop).includes("null")) out[c.path.split(".").pop()] = r.value;
      }
      return {value: out};
    };
    return {read, focusable: () => toggle || (children[0] && children[0].node.querySelector("input, select"))};
  }

  /** The form for ``schema`` filled with ``values``, into ``holder`` (basic fields, then "Advanced options"). */
  function build(holder, schema, values) {
    const fields = Object.entries(schema.properties).map(([name, prop]) => field([name], prop, values[name], `cfg-${name}`));
    const basic = fields.filter(f => !f.advanced), advanced = fields.filter(f => f.advanced);
    holder.replaceChildren(el("legend", {text: "Configuration"}), ...basic.map(f => f.node));
    let details = null;
    if (advanced.length) {
      details = el("details", {class: "advanced", id: "advanced-options"},
        el("summary", {text: `Advanced options (${advanced.length})`}), ...advanced.map(f => f.node));
      holder.append(details);
    }
    const byPath = new Map(fields.map(f => [f.path, f]));

    /** {config, errors: [[path, message]]}: the values read, and what the schema's checks say about them. */
    function read() {
      const config = {}, errors = [];
      for (const f of fields) {
        const r = f.read();
        if (r.error) errors.push([f.path, r.error]);
        else config[f.path] = r.value;
      }
      for (const [path, message] of check(schema, config)) if (!errors.some(([p]) => p === path.split(".")[0])) errors.push([path, message]);
      return {config, errors};
    }
    /** The field a message for ``path`` ("a.b.0") belongs to: the deepest one that exists. */
    function fieldFor(path) {
      const parts = path.split(".");
      let found = null, list = fields;
      for (let i = 1; i <= parts.length && list; i++) {
        const f = list.find(x => x.path === parts.slice(0, i).join("."));
        if (!f) break;
        found = f;
        list = f.node.subfields;
      }
      return found;
    }
    /** Show ``errors`` ([[path, message]]) at their fields; returns those no field takes. */
    function showErrors(errors) {
      const clear = list => list.forEach(f => { f.setError(""); if (f.node.subfields) clear(f.node.subfields); });
      clear(fields);
      const perField = new Map(), rest = [];
      for (const [path, message] of errors) {
        const f = fieldFor(path);
        if (!f) { rest.push([path, message]); continue; }
        const index = path.slice(f.path.length + 1);
        perField.set(f, [...(perField.get(f) || []), index ? `item ${Number(index) + 1}: ${message}` : message]);
      }
      for (const [f, messages] of perField) {
        f.setError(messages.join(" "));
        if (f.advanced && details) details.open = true;
      }
      return rest;
    }
    function reveal(path) {
      const f = fieldFor(path);
      if (!f) return;
      if (details && details.contains(f.node)) details.open = true;
      f.focus();
    }
    const labelOf = path => { const f = fieldFor(path); return f ? f.path.replaceAll("_", " ") : path; };
    const idOf = path => { const f = fieldFor(path); return f ? f.focusId() : null; };
    return {read, showErrors, reveal, labelOf, idOf, fields: byPath};
  }

  return {build, check};
})();
