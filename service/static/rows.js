// One table row per job result (a `/v1/predict/batch` item), and how its numbers are written.
"use strict";

export const PROPERTIES = ["formation_energy_per_atom", "band_gap"]; // the table's value columns, in order

const ref = (pred) => `${pred.model}@${pred.version}`;
const present = (x) => x !== null && x !== undefined;

// "−1.234 ± 0.056" when the answer has a `sigma`, "−1.234" when it has none (or no `sigma` field).
export function formatValue(pred, digits = 3) {
  if (!pred || !present(pred.value)) return "";
  const value = pred.value.toFixed(digits);
  return present(pred.sigma) ? `${value} ± ${pred.sigma.toFixed(digits)}` : value;
}

export function formatPMetal(p) {
  return present(p) ? p.toFixed(2) : "";
}

// The row of one result; `item` is kept whole for the CSV.
export function toRow(item, id) {
  const predictions = item.predictions || {};
  const rank = (name) => (PROPERTIES.includes(name) ? PROPERTIES.indexOf(name) : PROPERTIES.length);
  const names = Object.keys(predictions).sort((a, b) => rank(a) - rank(b));
  const refs = [...new Set(names.map((name) => ref(predictions[name])))];
  const value = (name) => (predictions[name] ? predictions[name].value : null);
  const warnings = item.warnings || [];
  return {
    id,
    item,
    ok: item.ok,
    file: item.filename,
    formula: item.structure ? item.structure.reduced_formula : "",
    n_sites: item.structure ? item.structure.n_sites : null,
    formation_energy_per_atom: value("formation_energy_per_atom"),
    band_gap: value("band_gap"),
    p_metal: predictions.band_gap && present(predictions.band_gap.p_metal) ? predictions.band_gap.p_metal : null,
    model: refs.join(", "),
    modelTitle: names.map((name) => `${name.replaceAll("_", " ")}: ${ref(predictions[name])}`).join("\n"),
    warnings: warnings.map((w) => w.code).join(" "),
    error: item.ok ? "" : item.error.detail,
    code: item.ok ? "" : item.error.code,
  };
}

// The answers of the models other than the first for one property: [{ref, text}].
export function alternatives(row, property) {
  return ((row.item.alternatives || {})[property] || []).map((pred) => ({
    ref: ref(pred),
    text: `${formatValue(pred)} ${pred.unit}${present(pred.p_metal) ? `, P(metal) ${formatPMetal(pred.p_metal)}` : ""}`,
  }));
}
