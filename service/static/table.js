// The results table: cells of one row (values ± sigma, alternatives, warning badges, error), sorting.
"use strict";

import { alternatives, formatPMetal, formatValue } from "./rows.js";

const empty = (x) => x === null || x === undefined || x === "";

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = empty(text) ? "" : String(text);
  if (className) td.className = className;
  tr.appendChild(td);
  return td;
}

// A code with a line-break opportunity after each "_", so a long code wraps in a narrow column.
function breakable(parent, code) {
  code.split("_").forEach((part, i, parts) => {
    parent.append(i < parts.length - 1 ? `${part}_` : part);
    if (i < parts.length - 1) parent.append(document.createElement("wbr"));
  });
}

function badge(parent, className, code, title) {
  const span = document.createElement("span");
  span.className = className;
  span.tabIndex = 0;
  span.title = title;
  breakable(span, code);
  parent.appendChild(span);
  return span;
}

function valueCell(tr, row, property) {
  const pred = (row.item.predictions || {})[property];
  const td = cell(tr, formatValue(pred), "num");
  td.dataset.key = property;
  const alts = alternatives(row, property);
  if (alts.length) {
    const span = document.createElement("span");
    span.className = "alt";
    span.tabIndex = 0;
    span.textContent = `+${alts.length}`;
    span.title = `Other models:\n${alts.map((a) => `${a.ref}: ${a.text}`).join("\n")}`;
    span.setAttribute("aria-label", span.title);
    td.append(" ", span);
  }
}

export function renderRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.id = row.id;
  if (!row.ok) tr.classList.add("failed");
  cell(tr, row.file, "file");
  cell(tr, row.formula);
  cell(tr, row.n_sites, "num col-sites");
  valueCell(tr, row, "formation_energy_per_atom");
  valueCell(tr, row, "band_gap");
  cell(tr, formatPMetal(row.p_metal), "num col-p-metal");
  const model = cell(tr, "", "col-model");
  const clip = document.createElement("div");
  clip.className = "clip";
  clip.textContent = row.model;
  clip.title = row.modelTitle;
  model.appendChild(clip);
  const warnings = cell(tr, "", "warnings");
  // one badge per code; several warnings with one code (one per model) share it, their sentences on hover
  const details = new Map();
  for (const w of row.item.warnings || []) details.set(w.code, [...(details.get(w.code) || []), w.detail]);
  for (const [code, sentences] of details) badge(warnings, "badge", code, sentences.join("\n"));
  const err = cell(tr, row.error, "error");
  if (row.code) {
    const code = document.createElement("small");
    code.textContent = row.code;
    err.appendChild(code);
  }
  return tr;
}

function compare(a, b, key, numeric) {
  const x = a[key];
  const y = b[key];
  if (empty(x) || empty(y)) return empty(x) === empty(y) ? 0 : empty(x) ? 1 : -1; // empty cells last
  return numeric ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
}

// `rows` sorted by `key` (dir 1 ascending, -1 descending), empty cells last either way.
export function sortRows(rows, key, dir, numeric) {
  if (!key) return rows;
  return [...rows].sort((a, b) => {
    const c = compare(a, b, key, numeric);
    return empty(a[key]) || empty(b[key]) ? c : c * dir;
  });
}
