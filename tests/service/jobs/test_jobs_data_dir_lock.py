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
    make_archive: Callable,
    service_process: Callable[..., Any],
) -> None:
    data = tmp_path / "data"
    env = {"CRYSTAL_MODELS_DIR": str(models_dir), "CRYSTAL_DATA_DIR": str(data), "CRYSTAL_PARSE_WORKERS": "1"}
    members = many_cifs(N_FILES)
    first = service_process(env)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        job = client.post(
            "/v1/jobs", content=make_archive(members, "tar.gz"), headers={"Content-Type": "application/gzip"}
        ).json()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job['id']}").json()["counts"]["done"] < 20:
            assert time.monotonic() < deadline
            time.sleep(0.02)

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
        deadline = time.monotonic() + 180
        while (status := client.get(f"/v1/jobs/{job['id']}").json())["state"] != "done":
            assert status["state"] == "running" and time.monotonic() < deadline, status
            time.sleep(0.1)
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
