// Crystal screening page: submit dropped files as a job, poll it, fill the table and the plot, sort,
// download the job's CSV (the service's own, with every column of the answer). Modules: rows.js (answers ->
// rows), table.js, scatter.js.
"use strict";

import { toRow } from "./rows.js";
import { drawScatter, markPoint } from "./scatter.js";
import { renderRow, sortRows } from "./table.js";

const FINISHED = new Set(["done", "failed", "cancelled"]);
const POLL_MS = 500;
const $ = (selector) => document.querySelector(selector);

const state = { job: null, rows: [], offset: 0, sort: { key: null, dir: 1 }, timer: null, selected: null };

function headers() {
  const key = $("#api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) {
    $("#key-box").open = true;
    $("#api-key").focus();
  }
  return response;
}

async function problem(response) {
  try {
    const body = await response.json();
    return `${body.detail || body.title} (${body.code})`;
  } catch {
    return `The server answered ${response.status}.`;
  }
}

function say(text) {
  $("#status").textContent = text;
}

// -- results ------------------------------------------------------------------------------

function sortedRows() {
  const { key, dir } = state.sort;
  const numeric = key ? $(`th[data-key="${key}"]`).hasAttribute("data-numeric") : false;
  return sortRows(state.rows, key, dir, numeric);
}

function renderTable() {
  const body = $("#results tbody");
  body.replaceChildren(...sortedRows().map(renderRow));
  $("#results").classList.toggle("has-p-metal", state.rows.some((row) => row.p_metal !== null));
  if (state.selected !== null) select(state.selected, false);
}

function renderPlot() {
  const points = state.rows
    .filter((row) => row.ok && row.formation_energy_per_atom !== null && row.band_gap !== null)
    .map((row) => ({
      id: row.id,
      x: row.formation_energy_per_atom,
      y: row.band_gap,
      label: row.file,
      warned: row.warnings !== "",
    }));
  $("#plot").hidden = points.length === 0;
  drawScatter($("#scatter"), $("#plot-tip"), points, (id) => select(id, true));
  $("#plot-caption").textContent =
    `Band gap against formation energy, ${points.length} structure${points.length === 1 ? "" : "s"} ` +
    "(ringed: with warnings). Hover a point for its file; click it to find its row.";
  if (state.selected !== null) markPoint($("#scatter"), state.selected);
}

function render() {
  renderTable();
  renderPlot();
}

// Highlight row `id` (and its point); `reveal` scrolls the row into view and focuses it.
function select(id, reveal) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#results tbody tr.selected")) tr.classList.remove("selected");
  const tr = $(`#results tbody tr[data-id="${id}"]`);
  if (!tr) return;
  tr.classList.add("selected");
  markPoint($("#scatter"), id);
  if (reveal) {
    tr.tabIndex = -1;
    tr.scrollIntoView({ block: "center" });
    tr.focus({ preventScroll: true });
  }
}

function sortBy(th) {
  const key = th.dataset.key;
  state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
  for (const other of document.querySelectorAll("#results th")) other.setAttribute("aria-sort", "none");
  th.setAttribute("aria-sort", state.sort.dir === 1 ? "ascending" : "descending");
  renderTable();
}

// -- jobs ---------------------------------------------------------------------------------

// Files and structures are counted apart (`ok` and `failed` count rows: a file with several data
// blocks gives several): "12 of 12 files, 9 predicted, 4 failed".
function progress(job) {
  const { total, done, ok, failed } = job.counts;
  $("#progress").max = Math.max(total, 1);
  $("#progress").value = done;
  const words = {
    queued: "Queued",
    running: "Running",
    done: "Done",
    failed: "Failed",
    cancelled: "Cancelled",
  }[job.state];
  let text = `${words}: ${done} of ${total} files, ${ok} predicted, ${failed} failed.`;
  if (job.error) text += ` ${job.error.detail}`;
  if (job.waiting) text += ` ${job.waiting.detail}`;
  say(text);
}

async function fetchResults() {
  const response = await api(`${state.job.links.results}?format=ndjson&offset=${state.offset}`);
  if (!response.ok) throw new Error(await problem(response));
  const lines = (await response.text()).split("\n").filter((line) => line.trim());
  state.offset += lines.length;
  for (const line of lines) state.rows.push(toRow(JSON.parse(line), state.rows.length));
  if (lines.length) render();
  $("#download").disabled = state.rows.length === 0;
}

async function poll() {
  try {
    const response = await api(state.job.links.self);
    if (!response.ok) throw new Error(await problem(response));
    const job = await response.json();
    await fetchResults(); // after the status: a finished job's rows are all there
    state.job = job;
    progress(job);
    if (!FINISHED.has(job.state)) state.timer = setTimeout(poll, POLL_MS);
  } catch (error) {
    say(`Lost the job: ${error.message}`);
  }
}

function chosenModels() {
  return [...document.querySelectorAll("#model-choices input:checked")].map((input) => input.value);
}

async function submit(files) {
  if (!files.length) return;
  clearTimeout(state.timer);
  Object.assign(state, { job: null, rows: [], offset: 0, selected: null });
  render();
  $("#download").disabled = true;
  say(`Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const models = chosenModels();
  const url = models.length ? `/v1/jobs?models=${encodeURIComponent(models.join(","))}` : "/v1/jobs";
  const response = await api(url, { method: "POST", body: form });
  if (!response.ok) {
    say(`The upload was refused: ${await problem(response)}`);
    return;
  }
  state.job = await response.json();
  progress(state.job);
  poll();
}

async function download() {
  // the service writes the CSV (one writer for the page, the client and the API): values, sigma, p_metal,
  // provenance, a column per alternative model, errors and warnings
  const response = await api(`/v1/jobs/${state.job.id}/results?format=csv`);
  if (!response.ok) {
    say(`The download failed: ${await problem(response)}`);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `screening-${state.job.id}.csv`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- models -------------------------------------------------------------------------------

function modelChoice(model) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.value = model.ref;
  const props = document.createElement("span");
  props.className = "unit";
  props.textContent = ` (${model.properties.map((p) => p.name.replaceAll("_", " ")).join(", ")})`;
  label.append(box, ` ${model.ref}`, props);
  return label;
}

async function loadModels() {
  const response = await api("/v1/models");
  if (!response.ok) {
    $("#models-status").textContent = `The model list is not available: ${await problem(response)}`;
    return;
  }
  const { models } = await response.json();
  const body = $("#models tbody");
  body.replaceChildren();
  for (const model of models) {
    for (const prop of model.properties) {
      const tr = document.createElement("tr");
      for (const text of [model.ref, model.architecture, prop.name.replaceAll("_", " ")]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      const mae = model.test_mae[prop.name];
      const td = document.createElement("td");
      td.className = "num";
      td.textContent = mae === undefined ? "not recorded" : `${mae.toFixed(3)} ${prop.unit}`;
      const dflt = document.createElement("td");
      dflt.textContent = model.default_for.includes(prop.name) ? "yes" : "";
      tr.append(td, dflt);
      body.appendChild(tr);
    }
  }
  const chosen = new Set(chosenModels());
  $("#model-choices").replaceChildren(...models.map(modelChoice));
  for (const input of document.querySelectorAll("#model-choices input")) input.checked = chosen.has(input.value);
  $("#models-status").textContent = `${models.length} model${models.length === 1 ? "" : "s"} loaded.`;
}

// -- wiring -------------------------------------------------------------------------------

function init() {
  const drop = $("#drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    submit([...event.dataTransfer.files]);
  });
  $("#files").addEventListener("change", (event) => {
    submit([...event.target.files]);
    event.target.value = "";
  });
  $("#download").addEventListener("click", download);
  for (const th of document.querySelectorAll("#results th")) {
    th.querySelector("button").addEventListener("click", () => sortBy(th));
  }
  $("#api-key").addEventListener("change", loadModels);
  loadModels();
}

init();
