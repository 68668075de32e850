"""Two service processes on one data folder: the second is refused, with a message naming the folder.

Real ``python -m service`` processes: the first owns the folder (an ``flock`` on
``<data_dir>/service.lock``); a second one started on it exits at start-up, or, when the folder
was created after it started, answers job requests with 503 ``data_dir_busy``. Once the owner is
killed with ``kill -9`` the lock is gone with it: a new process takes the folder over and
finishes the job, no file lost and none run twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

N_FILES = 200


def test_second_process_on_a_data_dir_is_refused_then_takes_over_after_a_kill(
    models_dir: Path,
    tmp_path: Path,
    many_cifs: Callable,
    submit_archive: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
    service_process: Callable[..., Any],
) -> None:
    data = tmp_path / "data"
    env = {"CRYSTAL_MODELS_DIR": str(models_dir), "CRYSTAL_DATA_DIR": str(data), "CRYSTAL_PARSE_WORKERS": "1"}
    members = many_cifs(N_FILES)
    first = service_process(env)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        job = submit_archive(client, members)
        wait_job(client, job["id"], until=lambda s: s["counts"]["done"] >= 20)

        start = time.monotonic()
        with pytest.raises(RuntimeError) as refused:
            service_process(env)  # raises with the process's log when it exits
        assert time.monotonic() - start < 120
        assert str(data) in str(refused.value) and "in use by another service process" in str(refused.value)
        # The first process was not disturbed.
        assert client.get(f"/v1/jobs/{job['id']}").json()["state"] in {"running", "done"}
    first.kill()

    second = service_process(env)
    with httpx.Client(base_url=second.url, timeout=60) as client:
        status = wait_job(client, job["id"], timeout=180)
        assert status["state"] == "done", status
        items = [json.loads(line) for line in client.get(job["links"]["results"]).text.splitlines()]
    assert status["counts"] == {"total": N_FILES, "done": N_FILES, "ok": N_FILES, "failed": 0}
    assert sorted(item["index"] for item in items) == list(range(N_FILES)), "every file exactly once"


def test_folder_created_after_a_second_process_started_is_still_owned_by_one(
    models_dir: Path, tmp_path: Path, cifs: dict[str, str], service_process: Callable[..., Any]
) -> None:
    data = tmp_path / "fresh"
    env = {"CRYSTAL_MODELS_DIR": str(models_dir), "CRYSTAL_DATA_DIR": str(data), "CRYSTAL_PARSE_WORKERS": "1"}
    one, two = service_process(env), service_process(env)  # no database yet: both start
    files = [("files", ("nacl.cif", cifs["nacl"]))]
    with httpx.Client(base_url=one.url, timeout=60) as a, httpx.Client(base_url=two.url, timeout=60) as b:
        assert a.post("/v1/jobs", files=files).status_code == 202
        refused = b.post("/v1/jobs", files=files)
        assert refused.status_code == 503
        assert refused.json()["code"] == "data_dir_busy" and str(data) in refused.json()["detail"]
        assert b.post("/v1/predict", json={"cif": cifs["nacl"]}).status_code == 200  # the rest still serves
