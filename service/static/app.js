// Crystal screening page: submit dropped files as a job, poll it, fill the table, sort, download CSV.
"use strict";

const FINISHED = new Set(["done", "failed", "cancelled"]);
const POLL_MS = 500;
const PROPERTIES = ["formation_energy_per_atom", "band_gap"]; // the table's columns, in order
const $ = (selector) => document.querySelector(selector);

const state = { job: null, rows: [], offset: 0, sort: { key: null, dir: 1 }, timer: null };

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

function toRow(item) {
  const predictions = item.predictions || {};
  const value = (name) => (predictions[name] ? predictions[name].value : null);
  const rank = (name) => (PROPERTIES.includes(name) ? PROPERTIES.indexOf(name) : PROPERTIES.length);
  const names = Object.keys(predictions).sort((a, b) => rank(a) - rank(b));
  const models = [...new Set(names.map((name) => `${predictions[name].model}@${predictions[name].version}`))];
  return {
    file: item.filename,
    formula: item.structure ? item.structure.reduced_formula : "",
    n_sites: item.structure ? item.structure.n_sites : null,
    formation_energy_per_atom: value("formation_energy_per_atom"),
    band_gap: value("band_gap"),
    model: models.join(", "),
    error: item.ok ? "" : item.error.detail,
    code: item.ok ? "" : item.error.code,
    ok: item.ok,
  };
}

function compare(a, b, key, numeric) {
  const x = a[key];
  const y = b[key];
  const emptyX = x === null || x === "";
  const emptyY = y === null || y === "";
  if (emptyX || emptyY) return emptyX === emptyY ? 0 : emptyX ? 1 : -1; // empty cells last
  return numeric ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
}

function sortedRows() {
  const { key, dir } = state.sort;
  if (!key) return state.rows;
  const numeric = $(`th[data-key="${key}"]`).hasAttribute("data-numeric");
  return [...state.rows].sort((a, b) => {
    const c = compare(a, b, key, numeric);
    return (a[key] === null || a[key] === "" || b[key] === null || b[key] === "") ? c : c * dir;
  });
}

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  tr.appendChild(td);
  return td;
}

function render() {
  const body = $("#results tbody");
  body.replaceChildren();
  for (const row of sortedRows()) {
    const tr = document.createElement("tr");
    if (!row.ok) tr.className = "failed";
    cell(tr, row.file);
    cell(tr, row.formula);
    cell(tr, row.n_sites, "num");
    cell(tr, row.formation_energy_per_atom === null ? "" : row.formation_energy_per_atom.toFixed(3), "num");
    cell(tr, row.band_gap === null ? "" : row.band_gap.toFixed(3), "num");
    cell(tr, row.model);
    const err = cell(tr, row.error, "error");
    if (row.code) {
      const code = document.createElement("small");
      code.textContent = row.code;
      err.appendChild(code);
    }
    body.appendChild(tr);
  }
}

function sortBy(th) {
  const key = th.dataset.key;
  state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
  for (const other of document.querySelectorAll("#results th")) other.setAttribute("aria-sort", "none");
  th.setAttribute("aria-sort", state.sort.dir === 1 ? "ascending" : "descending");
  render();
}

// -- jobs ---------------------------------------------------------------------------------

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
  say(text);
}

async function fetchResults() {
  const response = await api(`${state.job.links.results}?format=ndjson&offset=${state.offset}`);
  if (!response.ok) throw new Error(await problem(response));
  const lines = (await response.text()).split("\n").filter((line) => line.trim());
  state.offset += lines.length;
  for (const line of lines) state.rows.push(toRow(JSON.parse(line)));
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

async function submit(files) {
  if (!files.length) return;
  clearTimeout(state.timer);
  Object.assign(state, { job: null, rows: [], offset: 0 });
  render();
  $("#download").disabled = true;
  say(`Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  const response = await api("/v1/jobs", { method: "POST", body: form });
  if (!response.ok) {
    say(`The upload was refused: ${await problem(response)}`);
    return;
  }
  state.job = await response.json();
  progress(state.job);
  poll();
}

async function download() {
  const response = await api(`${state.job.links.results}?format=csv`);
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
      cell(tr, model.ref);
      cell(tr, model.architecture);
      cell(tr, prop.name.replaceAll("_", " "));
      const mae = model.test_mae[prop.name];
      cell(tr, mae === undefined ? "not recorded" : `${mae.toFixed(3)} ${prop.unit}`, "num");
      cell(tr, model.default_for.includes(prop.name) ? "yes" : "");
      body.appendChild(tr);
    }
  }
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
