"""The SQLite job store without HTTP: transactions, resumable progress, accounting, expiry."""

from __future__ import annotations

from pathlib import Path

from service.jobs import JobStore
from service.jobs._store import FileResult, InputRow


def _store(path: Path, n: int = 4) -> JobStore:
    store = JobStore(path / "jobs.sqlite3")
    store.open()
    inputs = [InputRow(idx=i, filename=f"{i}.cif", offset=i * 10, length=10) for i in range(n)]
    store.create(
        job_id="a" * 32,
        created=100.0,
        models=[],
        properties=["band_gap"],
        inputs=inputs,
        input_bytes=10 * n,
        idempotency_key="k",
    )
    return store


def test_nothing_is_written_until_the_store_is_opened(tmp_path: Path) -> None:
    JobStore(tmp_path / "sub" / "jobs.sqlite3")
    assert not (tmp_path / "sub").exists()


def test_recorded_files_are_done_once_and_counted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = "a" * 32
    assert [i.idx for i in store.pending(job, 10)] == [0, 1, 2, 3]
    store.record(job, [FileResult(1, [(True, '{"r": 1}')]), FileResult(0, [(True, '{"r": 0}'), (False, '{"e": 0}')])])
    store.record(job, [FileResult(1, [(True, '{"again": 1}')])])  # a file already recorded is never stored twice
    assert [i.idx for i in store.pending(job, 10)] == [2, 3]
    row = store.get(job)
    assert row is not None and (row.done, row.n_ok, row.n_failed) == (2, 2, 1)
    assert store.results(job, 0, 10) == ['{"r": 1}', '{"r": 0}', '{"e": 0}']  # the order they were recorded
    assert store.results(job, 1, 1) == ['{"r": 0}']
    assert store.storage_bytes() == 40 + len('{"r": 1}{"r": 0}{"e": 0}')


def test_progress_survives_reopening_and_a_running_job_resumes_first(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = "a" * 32
    store.mark_running(job, 101.0)
    store.record(job, [FileResult(0, [(True, "{}")])])
    store.close()  # a new process opens the same file
    again = JobStore(tmp_path / "jobs.sqlite3")
    again.open()
    again.create(
        job_id="b" * 32, created=50.0, models=[], properties=[], inputs=[], input_bytes=0, idempotency_key=None
    )
    runnable = again.next_runnable()
    assert runnable is not None and runnable.id == job and runnable.state == "running" and runnable.started == 101.0
    assert [i.idx for i in again.pending(job, 10)] == [1, 2, 3]
    assert again.find_key("k") is not None and again.find_key("other") is None


def test_finished_jobs_expire_and_delete_removes_everything(tmp_path: Path) -> None:
    store = _store(tmp_path)
    job = "a" * 32
    store.record(job, [FileResult(0, [(True, "{}")])])
    assert store.expired(finished_before=1e12) == []  # not finished: never expires
    store.finish(job, "done", 200.0)
    assert store.expired(finished_before=150.0) == []
    assert store.expired(finished_before=250.0) == [job]
    store.delete(job)
    assert store.get(job) is None and store.results(job, 0, 10) == [] and store.pending(job, 10) == []
    assert store.storage_bytes() == 0
