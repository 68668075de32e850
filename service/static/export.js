// The page's CSV: one row per structure, built in the browser from the job's answers (NDJSON), so
// that it carries everything the answer does.
//
// Columns: file, formula, n_sites; for each property <p>, <p>_model, <p>_p_metal (band gap: the
// metal probability, empty for models without a metal head), <p>_sigma (one standard deviation,
// empty for models without uncertainty); for each other model that answered <p> (`?models=a,b`),
// <p>@<name>@<version> with its own _p_metal and _sigma columns; then error_code, error and warnings
// (the warning codes, space-separated). The first columns are those of the job CSV of the service.
"use strict";

const GATED = new Set(["band_gap"]); // properties whose answers may carry p_metal
const present = (x) => x !== null && x !== undefined;
const oneLine = (text) => String(text).split(/\s+/).filter(Boolean).join(" ");

function quote(field) {
  const text = present(field) ? String(field) : "";
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function predictionColumns(prop, pred, suffix) {
  const cells = [[`${prop}${suffix}`, pred ? pred.value : ""]];
  if (suffix === "") cells.push([`${prop}_model`, pred ? `${pred.model}@${pred.version}` : ""]);
  if (GATED.has(prop)) cells.push([`${prop}_p_metal${suffix}`, pred && present(pred.p_metal) ? pred.p_metal : ""]);
  cells.push([`${prop}_sigma${suffix}`, pred && present(pred.sigma) ? pred.sigma : ""]);
  return cells;
}

// CSV text of `items` (batch items); `properties` orders the property columns (the job's).
export function toCsv(items, properties) {
  const props = [...properties];
  for (const item of items) {
    for (const prop of Object.keys(item.predictions || {})) if (!props.includes(prop)) props.push(prop);
  }
  const altRefs = Object.fromEntries(props.map((prop) => [prop, []]));
  for (const item of items) {
    for (const [prop, preds] of Object.entries(item.alternatives || {})) {
      if (!altRefs[prop]) continue;
      for (const pred of preds) {
        const ref = `${pred.model}@${pred.version}`;
        if (!altRefs[prop].includes(ref)) altRefs[prop].push(ref);
      }
    }
  }
  const rows = items.map((item) => {
    const predictions = item.predictions || {};
    const structure = item.structure || {};
    const cells = [
      ["file", oneLine(item.filename || "")],
      ["formula", structure.reduced_formula || ""],
      ["n_sites", present(structure.n_sites) ? structure.n_sites : ""],
    ];
    for (const prop of props) cells.push(...predictionColumns(prop, predictions[prop], ""));
    for (const prop of props) {
      const alts = (item.alternatives || {})[prop] || [];
      for (const ref of altRefs[prop]) {
        const pred = alts.find((p) => `${p.model}@${p.version}` === ref);
        cells.push(...predictionColumns(prop, pred, `@${ref}`));
      }
    }
    const error = item.error || {};
    cells.push(["error_code", error.code || ""], ["error", oneLine(error.detail || "")]);
    cells.push(["warnings", (item.warnings || []).map((w) => w.code).join(" ")]);
    return cells;
  });
  const header = rows.length ? rows[0].map(([name]) => name) : ["file"];
  const lines = [header, ...rows.map((cells) => cells.map(([, value]) => value))];
  return lines.map((line) => line.map(quote).join(",")).join("\n") + "\n";
}
