"""Reader warnings reach a job's NDJSON results, like an interactive answer's."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx


def test_job_results_carry_the_reader_warnings(
    jobs_client: httpx.Client, trap_cifs: dict, wait_job: Callable[..., dict[str, Any]]
) -> None:
    files = [("files", ("unknown.cif", trap_cifs["unknown_group"])), ("files", ("clean.cif", trap_cifs["clean"]))]
    r = jobs_client.post("/v1/jobs", files=files)
    assert r.status_code == 202, r.text
    status = wait_job(jobs_client, r.json()["id"])
    assert status["state"] == "done", status
    items = [json.loads(line) for line in jobs_client.get(status["links"]["results"]).text.splitlines()]
    reader = {
        i["filename"]: [w["code"] for w in i["warnings"] if w["code"] != "element_not_in_training_set"] for i in items
    }
    assert reader == {"unknown.cif": ["symmetry_fallback"], "clean.cif": []}
    rows = jobs_client.get(status["links"]["results"], params={"format": "csv"}).text.splitlines()
    assert rows[0].endswith(",warnings")
    assert any(r.startswith("unknown.cif,") and "symmetry_fallback" in r.rsplit(",", 1)[1] for r in rows[1:]), rows


def test_job_rows_keep_block_names_and_a_broken_block_gets_its_own_row(
    jobs_client: httpx.Client, trap_cifs: dict, wait_job: Callable[..., dict[str, Any]]
) -> None:
    broken = (
        "data_broken\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\nloop_\n_atom_site_label\n"
        "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa1 0 0 0\nCl1 0.5 0.5\n"
    )
    text = trap_cifs["clean"] + broken + trap_cifs["dotted_tag"]
    r = jobs_client.post("/v1/jobs", files=[("files", ("multi.cif", text))])
    status = wait_job(jobs_client, r.json()["id"])
    assert status["counts"] == {"total": 1, "done": 1, "ok": 2, "failed": 1}
    items = [json.loads(line) for line in jobs_client.get(status["links"]["results"]).text.splitlines()]
    assert [(i["filename"], i["ok"]) for i in items] == [
        ("multi.cif#NaCl", True),
        ("multi.cif#broken", False),
        ("multi.cif#Ni", True),
    ]
    assert items[1]["error"]["code"] == "invalid_cif"


def test_a_strict_job_fails_the_rows_the_reader_has_warnings_about(
    jobs_client: httpx.Client, trap_cifs: dict, wait_job: Callable[..., dict[str, Any]]
) -> None:
    files = [("files", ("unknown.cif", trap_cifs["unknown_group"])), ("files", ("clean.cif", trap_cifs["clean"]))]
    r = jobs_client.post("/v1/jobs", files=files, params={"strict": "true"})
    assert r.status_code == 202, r.text
    assert r.json()["strict"] is True
    status = wait_job(jobs_client, r.json()["id"])
    assert status["strict"] is True
    assert status["counts"] == {"total": 2, "done": 2, "ok": 1, "failed": 1}, status
    items = {i["filename"]: i for i in map(json.loads, jobs_client.get(status["links"]["results"]).text.splitlines())}
    assert items["unknown.cif"]["ok"] is False
    assert items["unknown.cif"]["error"]["code"] == "symmetry_fallback"
    assert items["clean.cif"]["ok"] is True
