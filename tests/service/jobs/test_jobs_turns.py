"""Jobs take turns chunk by chunk: a small job never waits behind the whole of a large one, and says its place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from service.jobs import JobStore
from service.jobs._store import InputRow


def _create(store: JobStore, job_id: str, created: float) -> None:
    store.create(
        job_id=job_id,
        created=created,
        models=[],
        properties=[],
        inputs=[InputRow(0, "a.cif", 0, 1)],
        input_bytes=1,
        idempotency_key=None,
    )


def test_the_runner_picks_jobs_round_robin_and_counts_the_jobs_ahead(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.open()
    for job_id, created in (("b" * 32, 2.0), ("a" * 32, 1.0), ("c" * 32, 2.0)):
        _create(store, job_id, created)
    first = store.next_runnable()
    assert first is not None and first.id == "a" * 32  # the oldest first
    order, last = [], (first.created, first.id)
    for _ in range(4):
        row = store.next_runnable(last)
        assert row is not None
        order.append(row.id[0])
        last = (row.created, row.id)
    assert order == ["b", "c", "a", "b"]  # in submission order (ties by id), then round again
    positions = {row.id[0]: store.queue_position(row) for row in store.recent(10)}
    assert positions == {"a": 0, "b": 1, "c": 2}
    store.finish("a" * 32, "done", 5.0)
    after_b = store.next_runnable((2.0, "b" * 32))
    assert after_b is not None and after_b.id == "c" * 32
    assert store.queue_position(after_b) == 1  # a finished job is not ahead of anyone
    store.close()


def test_a_small_job_finishes_while_a_large_one_submitted_before_it_still_runs(
    jobs_client: httpx.Client,
    many_cifs: Callable[[int], dict[str, str]],
    make_archive: Callable[..., bytes],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    big = jobs_client.post(
        "/v1/jobs", content=make_archive(many_cifs(3000), "tar.gz"), headers={"Content-Type": "application/gzip"}
    ).json()
    wait_job(jobs_client, big["id"], until=lambda s: s["state"] == "running")
    small = jobs_client.post(
        "/v1/jobs", content=make_archive(many_cifs(5), "tar.gz"), headers={"Content-Type": "application/gzip"}
    ).json()
    assert small["state"] == "running" or small["queue_position"] >= 1, small  # the large job is ahead of it
    done = wait_job(jobs_client, small["id"], timeout=120)
    large = jobs_client.get(f"/v1/jobs/{big['id']}").json()
    assert done["state"] == "done" and done["counts"]["ok"] == 5 and done["queue_position"] is None
    assert large["state"] == "running" and large["counts"]["done"] < 3000, large  # it did not wait for all of it
    assert large["queue_position"] is None
    jobs_client.delete(f"/v1/jobs/{big['id']}")
