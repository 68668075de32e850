"""``/v1/jobs`` against a live server: submit, follow, read results, cancel, list."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

WaitJob = Callable[..., dict[str, Any]]


def _submit(client: httpx.Client, files: list[tuple[str, str]], **kwargs: Any) -> dict[str, Any]:
    r = client.post("/v1/jobs", files=[("files", (name, text)) for name, text in files], **kwargs)
    assert r.status_code == 202, r.text
    return r.json()


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def test_a_job_predicts_every_file_and_a_bad_file_is_a_failed_row(
    jobs_client: httpx.Client, cifs: dict, wait_job: WaitJob
) -> None:
    names = ["nacl", "garbage", "cu", "two_blocks", "disordered"]
    r = jobs_client.post("/v1/jobs", files=[("files", (f"{n}.cif", cifs[n])) for n in names])
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["links"]["results"] == f"/v1/jobs/{job['id']}/results"
    assert job["state"] in {"queued", "running"} and job["counts"]["total"] == 5
    assert job["properties"] == ["band_gap", "formation_energy_per_atom"] and job["models"] == []

    status = wait_job(jobs_client, job["id"])
    assert status["state"] == "done", status
    assert status["counts"] == {"total": 5, "done": 5, "ok": 4, "failed": 2}
    assert status["created"] <= status["started"] <= status["finished"] < status["expires"]
    assert status["error"] is None

    items = _ndjson(jobs_client.get(job["links"]["results"]).text)
    by_name = {item["filename"]: item for item in items}
    assert set(by_name) == {
        "nacl.cif",
        "garbage.cif",
        "cu.cif",
        "two_blocks.cif#NaCl",
        "two_blocks.cif#SrTiO3",
        "disordered.cif",
    }
    assert by_name["garbage.cif"]["error"]["code"] == "invalid_cif"
    assert by_name["disordered.cif"]["error"]["code"] == "disordered_structure"
    assert by_name["two_blocks.cif#SrTiO3"]["index"] == 3  # the input file's position
    # the same answers as an interactive request
    alone = jobs_client.post("/v1/predict", files={"file": ("nacl.cif", cifs["nacl"])}).json()
    assert by_name["nacl.cif"]["predictions"] == alone["predictions"]
    assert by_name["nacl.cif"]["structure"] == alone["structure"]


def test_results_as_csv_by_accept_or_format_with_one_row_per_structure(
    jobs_client: httpx.Client, cifs: dict, wait_job: WaitJob
) -> None:
    job = _submit(jobs_client, [("a/nacl.cif", cifs["nacl"]), ("b/bad.cif", cifs["garbage"]), ("c.cif", cifs["cu"])])
    wait_job(jobs_client, job["id"])
    by_accept = jobs_client.get(job["links"]["results"], headers={"Accept": "text/csv"})
    by_query = jobs_client.get(
        job["links"]["results"], params={"format": "csv"}, headers={"Accept": "application/json"}
    )
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert by_accept.headers["job-state"] == "done"
    assert by_accept.text == by_query.text
    rows = list(csv.DictReader(io.StringIO(by_accept.text)))
    assert list(rows[0]) == [
        "file", "formula", "n_sites",
        "band_gap", "band_gap_sigma", "band_gap_p_metal",
        "band_gap_model", "band_gap_weights_sha256", "band_gap_training_set", "band_gap_graph",
        "formation_energy_per_atom", "formation_energy_per_atom_sigma", "formation_energy_per_atom_model",
        "formation_energy_per_atom_weights_sha256", "formation_energy_per_atom_training_set",
        "formation_energy_per_atom_graph", "error_code", "error", "warnings",
    ]  # fmt: skip
    by_file = {row["file"]: row for row in rows}
    assert set(by_file) == {"a/nacl.cif", "b/bad.cif", "c.cif"}
    nacl = by_file["a/nacl.cif"]
    assert (nacl["formula"], nacl["n_sites"], nacl["error_code"]) == ("NaCl", "8", "")
    assert float(nacl["formation_energy_per_atom"]) == _ndjson_value(jobs_client, job, "a/nacl.cif")
    assert nacl["formation_energy_per_atom_model"] == "cgcnn-formation-energy@1"
    assert nacl["band_gap_model"] == "sr-cgcnn-band-gap@2"
    bad = by_file["b/bad.cif"]
    assert bad["error_code"] == "invalid_cif" and bad["error"] and bad["band_gap"] == "" and bad["formula"] == ""
    ndjson = jobs_client.get(job["links"]["results"], params={"format": "ndjson"})
    assert ndjson.headers["content-type"].startswith("application/x-ndjson")


def _ndjson_value(client: httpx.Client, job: dict[str, Any], filename: str) -> float:
    items = _ndjson(client.get(job["links"]["results"], params={"format": "ndjson"}).text)
    item = next(i for i in items if i["filename"] == filename)
    return float(item["predictions"]["formation_energy_per_atom"]["value"])


def test_offset_skips_rows_already_read(jobs_client: httpx.Client, many_cifs: Callable, wait_job: WaitJob) -> None:
    job = _submit(jobs_client, list(many_cifs(12).items()))
    wait_job(jobs_client, job["id"])
    full = jobs_client.get(job["links"]["results"], params={"format": "csv"}).text.splitlines()
    rest = jobs_client.get(job["links"]["results"], params={"format": "csv", "offset": 5, "header": "false"})
    assert rest.text.splitlines() == full[1 + 5 :]
    assert len(full) == 13
    items = _ndjson(jobs_client.get(job["links"]["results"], params={"offset": 10}).text)
    assert len(items) == 2


def test_archives_and_a_chosen_model(
    jobs_client: httpx.Client, cifs: dict, make_archive: Callable, wait_job: WaitJob
) -> None:
    members = {"x/nacl.cif": cifs["nacl"], "x/bad.cif": cifs["garbage"], "x/srtio3.cif": cifs["srtio3"]}
    raw = jobs_client.post(
        "/v1/jobs",
        content=make_archive(members, "tar.gz"),
        headers={"Content-Type": "application/gzip"},
        params={"models": "cgcnn-multitask"},
    )
    assert raw.status_code == 202, raw.text
    assert raw.json()["models"] == ["cgcnn-multitask@1"]
    zipped = jobs_client.post(
        "/v1/jobs", files=[("files", ("set.zip", make_archive(members, "zip"))), ("files", ("cu.cif", cifs["cu"]))]
    )
    assert zipped.status_code == 202, zipped.text
    for job in (raw.json(), zipped.json()):
        status = wait_job(jobs_client, job["id"])
        assert status["state"] == "done"
    raw_rows = list(
        csv.DictReader(io.StringIO(jobs_client.get(f"/v1/jobs/{raw.json()['id']}/results?format=csv").text))
    )
    assert {r["file"] for r in raw_rows} == set(members)
    assert {r["band_gap_model"] for r in raw_rows if r["error_code"] == ""} == {"cgcnn-multitask@1"}
    # its metal head: a probability beside every gap, and a gap of 0 where it says "metal"
    for r in (r for r in raw_rows if r["error_code"] == ""):
        assert 0.0 <= float(r["band_gap_p_metal"]) <= 1.0
    zip_rows = _ndjson(jobs_client.get(f"/v1/jobs/{zipped.json()['id']}/results").text)
    assert sorted(r["filename"] for r in zip_rows) == sorted([*members, "cu.cif"])


def test_an_idempotency_key_returns_the_first_job(jobs_client: httpx.Client, cifs: dict) -> None:
    files = [("files", ("nacl.cif", cifs["nacl"]))]
    first = jobs_client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "upload-1234"})
    again = jobs_client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "upload-1234"})
    other = jobs_client.post("/v1/jobs", files=files, headers={"Idempotency-Key": "upload-5678"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]


def test_list_get_and_delete_finished_jobs(
    jobs_client: httpx.Client, jobs_server: Any, cifs: dict, wait_job: WaitJob
) -> None:
    job = _submit(jobs_client, [("nacl.cif", cifs["nacl"])])
    wait_job(jobs_client, job["id"])
    listed = jobs_client.get("/v1/jobs", params={"limit": 3}).json()["jobs"]
    assert listed[0]["id"] == job["id"] and len(listed) <= 3
    folder = jobs_server.settings.data_dir / "jobs" / job["id"]
    assert (folder / "inputs.bin").is_file()
    r = jobs_client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["state"] == "done"
    assert not folder.exists()
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/results"):
        gone = jobs_client.get(path)
        assert gone.status_code == 404 and gone.json()["code"] == "job_not_found"
    assert jobs_client.delete(f"/v1/jobs/{job['id']}").json()["code"] == "job_not_found"
    assert jobs_client.get("/v1/jobs/../../etc").status_code == 404
    assert jobs_client.get("/v1/jobs/not-a-job-id").json()["code"] == "job_not_found"


def test_a_running_job_streams_results_yields_to_interactive_requests_and_can_be_cancelled(
    jobs_client: httpx.Client, jobs_server: Any, cifs: dict, many_cifs: Callable, make_archive: Callable,
    wait_job: WaitJob,
) -> None:  # fmt: skip
    n = 1500
    big = jobs_client.post(
        "/v1/jobs", content=make_archive(many_cifs(n), "zip"), headers={"Content-Type": "application/zip"}
    ).json()
    wait_job(jobs_client, big["id"], until=lambda s: s["counts"]["done"] >= 50)

    # results are readable while the job runs
    partial = jobs_client.get(big["links"]["results"], params={"format": "csv"})
    assert partial.headers["job-state"] == "running"
    assert 50 <= len(partial.text.splitlines()) - 1 < n

    # interactive requests keep priority: each waits behind a few parses, not behind the job
    latencies = []
    for name in ("nacl", "cu", "srtio3", "triclinic", "cscl"):
        t0 = time.perf_counter()
        r = jobs_client.post("/v1/predict", files={"file": (f"{name}.cif", cifs[name])})
        latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200
    status = jobs_client.get(f"/v1/jobs/{big['id']}").json()
    assert status["state"] == "running" and status["counts"]["done"] < n, "the job must still be running"
    assert max(latencies) < 1.5, latencies

    # DELETE cancels the running job and removes it
    r = jobs_client.delete(f"/v1/jobs/{big['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert jobs_client.get(f"/v1/jobs/{big['id']}").status_code == 404
    assert not (jobs_server.settings.data_dir / "jobs" / big["id"]).exists()
    # the runner goes on with the next job
    small = _submit(jobs_client, [("nacl.cif", cifs["nacl"])])
    assert wait_job(jobs_client, small["id"], timeout=30)["state"] == "done"


def test_a_job_whose_inputs_vanished_fails_with_a_code_and_the_next_one_runs(
    jobs_client: httpx.Client, jobs_server: Any, cifs: dict, many_cifs: Callable, make_archive: Callable,
    wait_job: WaitJob,
) -> None:  # fmt: skip
    busy = jobs_client.post(
        "/v1/jobs", content=make_archive(many_cifs(600), "zip"), headers={"Content-Type": "application/zip"}
    ).json()
    doomed = _submit(jobs_client, [("nacl.cif", cifs["nacl"])])  # queued behind the busy job
    after = _submit(jobs_client, [("cu.cif", cifs["cu"])])
    assert jobs_client.get(f"/v1/jobs/{doomed['id']}").json()["state"] == "queued"
    (jobs_server.settings.data_dir / "jobs" / doomed["id"] / "inputs.bin").unlink()
    jobs_client.delete(f"/v1/jobs/{busy['id']}")
    failed = wait_job(jobs_client, doomed["id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "inputs_missing", failed
    assert failed["finished"] is not None and failed["counts"]["done"] == 0
    assert wait_job(jobs_client, after["id"])["state"] == "done"
