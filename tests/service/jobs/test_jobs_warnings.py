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
