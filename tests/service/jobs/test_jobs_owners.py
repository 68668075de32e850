"""Jobs belong to the API key that made them; storage is charged as stored (compressed), per key too."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service import Settings


def test_each_key_sees_only_its_jobs_and_has_its_own_quota(
    models_dir: Path, tmp_path: Path, cifs: dict[str, str], live_server_factory: Callable[..., Any], wait_job
) -> None:
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path,
        api_keys={"alice": "key-a", "bob": "key-b"},
        jobs_max_storage_bytes_per_key=6_000,
    )
    live = live_server_factory(settings)
    padded = cifs["nacl"] + "#" * 7_000 + "\n"  # 8 KB, compresses to well under 1 KB
    with live.client(headers={"X-API-Key": "key-a"}) as alice, live.client(headers={"X-API-Key": "key-b"}) as bob:
        job = alice.post("/v1/jobs", files=[("files", ("nacl.cif", padded))]).json()
        wait_job(alice, job["id"])
        # Another key cannot see, read, list or delete it: to bob it does not exist.
        for response in (
            bob.get(f"/v1/jobs/{job['id']}"),
            bob.get(f"/v1/jobs/{job['id']}/results"),
            bob.delete(f"/v1/jobs/{job['id']}"),
        ):
            assert response.status_code == 404 and response.json()["code"] == "job_not_found"
        assert bob.get("/v1/jobs").json()["jobs"] == []
        assert [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]] == [job["id"]]
        assert alice.get(f"/v1/jobs/{job['id']}/results").text.count("\n") == 1
        # The same idempotency key used by two keys names two jobs.
        ka = alice.post("/v1/jobs", files=[("files", ("a.cif", cifs["cu"]))], headers={"Idempotency-Key": "k1"})
        kb = bob.post("/v1/jobs", files=[("files", ("b.cif", cifs["cu"]))], headers={"Idempotency-Key": "k1"})
        assert ka.status_code == kb.status_code == 202 and ka.json()["id"] != kb.json()["id"]
        # Bob fills his quota; alice can still submit.
        for _ in range(20):
            r = bob.post("/v1/jobs", files=[("files", ("nacl.cif", padded))])
            if r.status_code == 507:
                assert r.json()["code"] == "storage_full" and "'bob'" in r.json()["detail"]
                break
            wait_job(bob, r.json()["id"])
        else:
            raise AssertionError("bob's quota was never reached")
        assert alice.post("/v1/jobs", files=[("files", ("nacl.cif", cifs["nacl"]))]).status_code == 202
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        stored = db.execute("SELECT input_bytes FROM jobs WHERE id = ?", (job["id"],)).fetchone()[0]
    assert stored < len(padded) / 4, "inputs are charged as stored, compressed"
