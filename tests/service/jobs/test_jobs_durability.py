"""A server killed with ``kill -9`` in the middle of a job resumes it on restart and loses nothing."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

N_FILES = 500


def _predicted(metrics: str) -> float:
    match = re.search(r'^crystal_structures_predicted_total\{outcome="ok"\} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_kill_9_mid_job_then_restart_resumes_and_keeps_every_committed_result(
    models_dir: Path,
    tmp_path: Path,
    cifs: dict,
    many_cifs: Callable,
    submit_archive: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
    service_process: Callable[..., Any],
) -> None:
    env = {
        "CRYSTAL_MODELS_DIR": str(models_dir),
        "CRYSTAL_DATA_DIR": str(tmp_path / "data"),
        "CRYSTAL_PARSE_WORKERS": "1",
    }
    members = many_cifs(N_FILES)
    members["set/bad.cif"] = cifs["garbage"]
    first = service_process(env)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        job = submit_archive(client, members)
        wait_job(client, job["id"], until=lambda s: s["counts"]["done"] >= 60)
        before = client.get(job["links"]["results"]).text.splitlines()
    first.kill()  # SIGKILL to the server and its parse workers: no shutdown code runs

    # The database says what was committed: the job is still running, its rows are there.
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        state, done = db.execute("SELECT state, done FROM jobs WHERE id = ?", (job["id"],)).fetchone()
    assert state == "running" and len(before) <= done < len(members), (state, done, len(before))

    second = service_process(env)
    with httpx.Client(base_url=second.url, timeout=60) as client:
        status = wait_job(client, job["id"], timeout=120)
        assert status["state"] == "done", status
        after = client.get(job["links"]["results"]).text.splitlines()
        predicted_here = _predicted(client.get("/metrics").text)

    assert status["counts"] == {"total": len(members), "done": len(members), "ok": N_FILES, "failed": 1}
    assert after[: len(before)] == before, "rows computed before the kill must be kept as they were"
    items = [json.loads(line) for line in after]
    assert sorted(item["index"] for item in items) == list(range(len(members))), "every file exactly once"
    assert {item["filename"] for item in items} == set(members)
    # the restarted server computed only what had not been committed (plus its warm-up, none counted)
    assert predicted_here <= N_FILES - (done - 1), (predicted_here, done)
