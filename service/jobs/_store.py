"""Durable job storage: one SQLite database for metadata and results, one inputs file per job.

``<data_dir>/jobs.sqlite3`` holds three tables: ``jobs`` (state, counters, timestamps),
``inputs`` (one row per uploaded file: its name and where its bytes lie in
``<data_dir>/jobs/<id>/inputs.bin``, and whether it is done) and ``results`` (one row per
structure, the ``BatchItem`` JSON, in the order they were computed). A file's results and its
``done`` flag are written in one transaction, so a process killed at any point resumes with
exactly the files that have no result, and nothing computed and committed is lost.

One process owns a data folder: :class:`JobStore` holds an exclusive ``flock`` on
``<data_dir>/service.lock`` while it is open, and a second service process pointed at the same
folder is refused (:class:`DataDirBusy`) instead of running every job a second time and sweeping
the first one's inputs as orphans. The lock goes with its process, however that ends.

The database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
process being killed (not a power cut). :class:`JobStore` is synchronous and not thread-safe;
the job service calls it from one dedicated thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import DataDirBusy

__all__ = ["JobRow", "InputRow", "FileResult", "JobStore", "LOCK_NAME"]

#: The lock file in the data folder, held by the one process that owns it.
LOCK_NAME = "service.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    n_ok INTEGER NOT NULL DEFAULT 0,
    n_failed INTEGER NOT NULL DEFAULT 0,
    models TEXT NOT NULL,
    properties TEXT NOT NULL,
    input_bytes INTEGER NOT NULL,
    result_bytes INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_detail TEXT,
    idempotency_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, created);
CREATE TABLE IF NOT EXISTS inputs (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    filename TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    error_code TEXT,
    error_detail TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inputs_pending ON inputs(job_id, done, idx);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_job ON results(job_id, seq);
"""

_JOB_COLUMNS = (
    "id, state, created, started, finished, total, done, n_ok, n_failed, models, properties, "
    "input_bytes, result_bytes, error_code, error_detail, owner, input_codec, executor, strict"
)
#: Columns added after the first release, with their definitions (added to older databases on open).
_ADDED_COLUMNS = {
    "owner": "TEXT",
    "input_codec": "TEXT NOT NULL DEFAULT 'raw'",
    "executor": "TEXT",
    "strict": "INTEGER",
}


@dataclass(frozen=True)
class JobRow:
    """A job as stored (times are Unix seconds)."""

    id: str
    state: str
    created: float
    started: float | None
    finished: float | None
    total: int
    done: int
    n_ok: int
    n_failed: int
    models: list[str]
    properties: list[str]
    input_bytes: int
    result_bytes: int
    error_code: str | None
    error_detail: str | None
    owner: str | None = None
    input_codec: str = "raw"
    executor: str | None = None  # what ran it last: ``inprocess`` or ``ray`` (``None``: not started)
    strict: bool | None = None  # reader warnings refuse a structure (``None``: a job stored before the option)

    @classmethod
    def from_sql(cls, row: Sequence[object]) -> JobRow:
        values = list(row)
        values[9] = json.loads(str(values[9]))
        values[10] = json.loads(str(values[10]))
        values[18] = None if values[18] is None else bool(values[18])
        return cls(*values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class InputRow:
    """One uploaded file: ``length`` bytes at ``offset`` of ``inputs.bin``, or an error found on upload."""

    idx: int
    filename: str
    offset: int
    length: int
    error_code: str | None = None
    error_detail: str | None = None


@dataclass(frozen=True)
class FileResult:
    """Every result row of one input file: ``(ok, BatchItem JSON)`` per structure."""

    idx: int
    rows: list[tuple[bool, str]]


class JobStore:
    """The jobs database at ``path`` (opened by :meth:`open`, which creates it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the data folder's exclusive lock (creating the folder; a no-op when held).

        Raises:
            DataDirBusy: another process holds it.
        """
        if self._lock_fd is not None:
            return
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"The data folder {folder} is in use by another service process (pid {holder}); "
                "one process owns a data folder: stop the other one, or give this one its own CRYSTAL_DATA_DIR."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def open(self) -> None:
        """Lock the data folder and open the database, creating both when absent (a no-op when open).

        Raises:
            DataDirBusy: another process owns the data folder.
        """
        if self._db is not None:
            return
        self.lock()
        db = sqlite3.connect(self.path, isolation_level=None)  # explicit BEGIN/COMMIT below
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        present = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
        for column, definition in _ADDED_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {definition}")
        self._db = db

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self.unlock()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the job store is not open")
        return self._db

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    # -- jobs ---------------------------------------------------------------------------------

    def create(
        self,
        *,
        job_id: str,
        created: float,
        models: list[str],
        properties: list[str],
        inputs: Sequence[InputRow],
        input_bytes: int,
        idempotency_key: str | None,
        owner: str | None = None,
        input_codec: str = "raw",
        strict: bool = False,
    ) -> None:
        """Insert a queued job and its inputs in one transaction.

        Args:
            job_id: The new job's id.
            created: Submission time (the clock's seconds).
            models: The ``name@version`` of the models it runs (empty: the defaults).
            properties: The properties its results hold.
            inputs: Where each input file lies in ``inputs.bin``, or the error found on upload.
            idempotency_key: The client's key for the submission, if any.
            input_bytes: Bytes its inputs take on disk (what is charged to the storage budget).
            owner: The API key name that created it (``None`` without keys).
            input_codec: How each input is stored in ``inputs.bin``: ``raw`` or ``zlib``.
            strict: Whether the reader's warnings refuse a structure (the job's ``strict``).
        """
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, state, created, total, models, properties, input_bytes, idempotency_key, "
                "owner, input_codec, strict) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    created,
                    len(inputs),
                    json.dumps(models),
                    json.dumps(properties),
                    input_bytes,
                    idempotency_key,
                    owner,
                    input_codec,
                    int(strict),
                ),
            )
            db.executemany(
                "INSERT INTO inputs (job_id, idx, filename, offset, length, error_code, error_detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, r.idx, r.filename, r.offset, r.length, r.error_code, r.error_detail) for r in inputs],
            )

    def get(self, job_id: str) -> JobRow | None:
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobRow.from_sql(row) if row else None

    def find_key(self, idempotency_key: str) -> JobRow | None:
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        found = row.fetchone()
        return JobRow.from_sql(found) if found else None

    def recent(self, limit: int, owner: str | None = None) -> list[JobRow]:
        """The newest jobs (of ``owner`` when given)."""
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE ? IS NULL OR owner = ? ORDER BY created DESC LIMIT ?",
            (owner, owner, limit),
        )
        return [JobRow.from_sql(r) for r in rows]

    def next_runnable(self, after: tuple[float, str] | None = None) -> JobRow | None:
        """The job whose next chunk runs now.

        Args:
            after: ``(created, id)`` of the job that ran the last chunk: the next unfinished job in
                submission order comes after it, round robin, so jobs take turns chunk by chunk.
                Without it (the runner's first pick): a job interrupted while running first, else
                the oldest queued one.
        """
        if after is not None:
            row = self.db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('running', 'queued') "
                "AND (created > ? OR (created = ? AND id > ?)) ORDER BY created, id LIMIT 1",
                (after[0], after[0], after[1]),
            ).fetchone()
            if row is None:  # back to the first
                row = self.db.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('running', 'queued') ORDER BY created, id LIMIT 1"
                ).fetchone()
            return JobRow.from_sql(row) if row else None
        row = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('running', 'queued') "
            "ORDER BY state = 'running' DESC, created LIMIT 1"
        ).fetchone()
        return JobRow.from_sql(row) if row else None

    def queue_position(self, job: JobRow) -> int:
        """Unfinished jobs submitted before ``job`` (each runs a chunk in turn before it starts)."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('running', 'queued') "
            "AND (created < ? OR (created = ? AND id < ?))",
            (job.created, job.created, job.id),
        ).fetchone()
        return int(row[0])

    def mark_running(self, job_id: str, now: float, executor: str = "inprocess") -> None:
        """A queued job starts, or an interrupted one resumes, on ``executor``."""
        self.db.execute(
            "UPDATE jobs SET state = 'running', started = COALESCE(started, ?), executor = ? "
            "WHERE id = ? AND state IN ('queued', 'running')",
            (now, executor, job_id),
        )

    def finish(self, job_id: str, state: str, now: float, error: tuple[str, str] | None = None) -> None:
        code, detail = error or (None, None)
        self.db.execute(
            "UPDATE jobs SET state = ?, finished = ?, error_code = ?, error_detail = ? WHERE id = ?",
            (state, now, code, detail, job_id),
        )

    def delete(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM inputs WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def expired(self, finished_before: float) -> list[str]:
        rows = self.db.execute(
            "SELECT id FROM jobs WHERE finished IS NOT NULL AND finished < ? ORDER BY finished", (finished_before,)
        )
        return [r[0] for r in rows]

    def job_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM jobs")}

    def storage_bytes(self, owner: str | None = None) -> int:
        """Bytes the stored jobs (of ``owner`` when given) use: their inputs as stored, and their results."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(input_bytes + result_bytes), 0) FROM jobs WHERE ? IS NULL OR owner = ?",
            (owner, owner),
        ).fetchone()
        return int(row[0])

    # -- inputs and results ---------------------------------------------------------------

    def pending(self, job_id: str, limit: int) -> list[InputRow]:
        """The next ``limit`` input files without a result, in upload order."""
        rows = self.db.execute(
            "SELECT idx, filename, offset, length, error_code, error_detail FROM inputs "
            "WHERE job_id = ? AND done = 0 ORDER BY idx LIMIT ?",
            (job_id, limit),
        )
        return [InputRow(*r) for r in rows]

    def record(self, job_id: str, files: Iterable[FileResult]) -> None:
        """Store the results of finished files and mark them done, in one transaction."""
        with self._transaction() as db:
            done = n_ok = n_failed = size = 0
            for file in files:
                claimed = db.execute(
                    "UPDATE inputs SET done = 1 WHERE job_id = ? AND idx = ? AND done = 0", (job_id, file.idx)
                ).rowcount
                if not claimed:  # already recorded: never store a file twice
                    continue
                db.executemany(
                    "INSERT INTO results (job_id, idx, ok, payload) VALUES (?, ?, ?, ?)",
                    [(job_id, file.idx, int(ok), payload) for ok, payload in file.rows],
                )
                done += 1
                n_ok += sum(1 for ok, _ in file.rows if ok)
                n_failed += sum(1 for ok, _ in file.rows if not ok)
                size += sum(len(payload) for _, payload in file.rows)
            db.execute(
                "UPDATE jobs SET done = done + ?, n_ok = n_ok + ?, n_failed = n_failed + ?, "
                "result_bytes = result_bytes + ? WHERE id = ?",
                (done, n_ok, n_failed, size, job_id),
            )

    def results(self, job_id: str, offset: int, limit: int) -> list[str]:
        """``limit`` result payloads from position ``offset``, in the order they were computed."""
        rows = self.db.execute(
            "SELECT payload FROM results WHERE job_id = ? ORDER BY seq LIMIT ? OFFSET ?", (job_id, limit, offset)
        )
        return [r[0] for r in rows]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
