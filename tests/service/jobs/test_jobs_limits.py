"""Job limits, bad uploads and expiry: each a clear problem+json with a stable code, never a crash."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Settings

WaitJob = Callable[..., dict[str, Any]]


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code and body["detail"], body
    return body


def test_jobs_need_the_api_key_but_the_page_does_not(limited_jobs_server: Any, cifs: dict) -> None:
    with limited_jobs_server.client() as anon:
        _problem(anon.get("/v1/jobs"), 401, "unauthorized")
        _problem(anon.post("/v1/jobs", files={"files": ("a.cif", cifs["nacl"])}), 401, "unauthorized")
        page = anon.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_too_many_files_or_bytes_refuse_the_job(
    limited_client: httpx.Client, cifs: dict, make_archive: Callable
) -> None:
    five = [("files", (f"{i}.cif", cifs["nacl"])) for i in range(5)]
    _problem(limited_client.post("/v1/jobs", files=five), 413, "too_many_files")
    members = {f"{i}.cif": cifs["cu"] for i in range(5)}
    zipped = make_archive(members, "zip")
    _problem(
        limited_client.post("/v1/jobs", content=zipped, headers={"Content-Type": "application/zip"}),
        413,
        "too_many_files",
    )
    body = b"x" * (49 << 10)
    _problem(limited_client.post("/v1/jobs", content=body, headers={"Content-Type": "application/zip"}), 413,
             "request_too_large")  # fmt: skip
    big = {f"{i}.cif": cifs["nacl"] + "#" * 7000 + "\n" for i in range(4)}  # 32 KiB unpacked, limit 24 KiB
    _problem(
        limited_client.post("/v1/jobs", content=make_archive(big, "zip"), headers={"Content-Type": "application/zip"}),
        400,
        "archive_invalid",
    )


def test_bad_uploads_are_refused_with_stable_codes(limited_client: httpx.Client, cifs: dict) -> None:
    _problem(limited_client.post("/v1/jobs", content=cifs["nacl"], headers={"Content-Type": "text/plain"}), 415,
             "unsupported_media_type")  # fmt: skip
    _problem(limited_client.post("/v1/jobs", content=b"not an archive", headers={"Content-Type": "application/zip"}),
             415, "unsupported_media_type")  # fmt: skip
    _problem(
        limited_client.post("/v1/jobs", files={"files": ("set.zip", b"PK\x03\x04 broken")}), 400, "archive_invalid"
    )
    _problem(limited_client.post("/v1/jobs", data={"note": "no file"}, files={}), 415, "unsupported_media_type")
    _problem(
        limited_client.post("/v1/jobs", files={"files": ("a.cif", cifs["nacl"])}, params={"models": "nope"}),
        404,
        "unknown_model",
    )
    _problem(limited_client.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request")


def test_an_oversized_cif_is_a_failed_row_and_the_job_goes_on(
    limited_client: httpx.Client, cifs: dict, wait_job: WaitJob
) -> None:
    files = [("files", ("huge.cif", cifs["nacl"] + "#" * (9 << 10) + "\n")), ("files", ("cu.cif", cifs["cu"]))]
    r = limited_client.post("/v1/jobs", files=files)
    assert r.status_code == 202, r.text
    status = wait_job(limited_client, r.json()["id"])
    assert status["state"] == "done" and status["counts"] == {"total": 2, "done": 2, "ok": 1, "failed": 1}
    rows = limited_client.get(f"/v1/jobs/{status['id']}/results", params={"format": "csv"}).text.splitlines()
    assert any(line.startswith("huge.cif,,,") and ",file_too_large," in line for line in rows), rows
    limited_client.delete(f"/v1/jobs/{status['id']}")


def test_stored_jobs_have_a_disk_budget(limited_client: httpx.Client, cifs: dict, wait_job: WaitJob) -> None:
    accepted: list[str] = []
    for _ in range(30):
        r = limited_client.post("/v1/jobs", files={"files": ("nacl.cif", cifs["nacl"])})
        if r.status_code != 202:
            body = _problem(r, 507, "storage_full")
            assert "12,000" in body["detail"]
            break
        accepted.append(r.json()["id"])
        wait_job(limited_client, accepted[-1])
    else:
        raise AssertionError("the storage budget was never reached")
    assert 2 <= len(accepted) < 30  # inputs are charged compressed (as stored): more NaCl jobs fit than bytes sent
    limited_client.delete(f"/v1/jobs/{accepted[0]}")
    r = limited_client.post("/v1/jobs", files={"files": ("nacl.cif", cifs["nacl"])})
    assert r.status_code == 202, r.text
    for job_id in [*accepted[1:], r.json()["id"]]:
        wait_job(limited_client, job_id)
        limited_client.delete(f"/v1/jobs/{job_id}")


def test_finished_jobs_expire_once_their_ttl_has_passed_on_the_jobs_clock(
    models_dir: Path, tmp_path: Path, cifs: dict, live_server_factory: Callable, wait_job: WaitJob
) -> None:
    ttl = 3600.0
    live = live_server_factory(Settings(models_dir=models_dir, parse_workers=1, data_dir=tmp_path, jobs_ttl_s=ttl))
    jobs = live.app.state.jobs
    with live.client() as client:
        job = client.post("/v1/jobs", files={"files": ("nacl.cif", cifs["nacl"])}).json()
        status = wait_job(client, job["id"])
        assert status["state"] == "done"
        kept = datetime.fromisoformat(status["expires"]) - datetime.fromisoformat(status["finished"])
        assert kept.total_seconds() == pytest.approx(ttl, abs=1)
        assert (tmp_path / "jobs" / job["id"]).is_dir()

        jobs.clock = lambda: time.time() + ttl / 2  # half an hour later: kept
        fresh = client.post("/v1/jobs", files={"files": ("cu.cif", cifs["cu"])}).json()  # wakes the runner
        wait_job(client, fresh["id"])
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200

        jobs.clock = lambda: time.time() + 2 * ttl  # two hours later: the first job has expired
        client.post("/v1/jobs", files={"files": ("cscl.cif", cifs["cscl"])}).raise_for_status()  # wakes the runner
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job['id']}").status_code != 404 or (tmp_path / "jobs" / job["id"]).exists():
            assert time.monotonic() < deadline, "the finished job did not expire"
            time.sleep(0.05)
        assert job["id"] not in {j["id"] for j in client.get("/v1/jobs").json()["jobs"]}
