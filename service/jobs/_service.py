"""The job service: creates, lists and deletes jobs, and runs them one at a time in the background.

What computes a job's files is its executor (``_executor``): by default this process's engine,
as described here; with ``jobs_executor=ray`` a Ray cluster (``_ray``). Either way the results
come back here and are committed the same way, so everything below about commits, resuming
and cancelling holds for both.

In process, a job runs on the same engine as interactive requests (the parse pool, then the micro-batching
inference workers): its files are read from disk ``jobs_chunk`` at a time and go through
:meth:`Engine.iter_files`, ``jobs_parsing`` of them in the parse pool at a time. Interactive
requests keep priority: while one is being answered the job starts parsing no new file beyond
one (see ``_priority``), so a request waits behind at most ``jobs_parsing`` job files, never
behind the whole job; its structures join the next micro-batch. The job's parsed structures are
``bulk``: they are parsed by a lower-priority pool, and the inference worker holds them a
little longer to fill its micro-batches. Finished files are committed every quarter second (or
every 64 files), each with its results in one transaction; after a crash the job resumes with
the files that have no result.

Jobs take turns: the runner runs one chunk of a job, then one of the next unfinished job in
submission order (round robin), so a small job submitted behind a large one waits for one chunk
of it, not for all of it; a queued job's status says how many jobs are ahead (``queue_position``).

Nothing is read or written until the first job is submitted, or until the database exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import sqlite3
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Literal, TypeVar

from ..errors import ServiceError
from ..registry import Selection
from ..schemas import Notice
from ..settings import Settings
from ..state import ServiceState
from ..uploads import Upload
from ._errors import DataDirBusy, ExecutorUnavailable, InputsMissing, JobNotFound, StorageFull
from ._executor import make_executor
from ._export import csv_lines, ndjson_lines
from ._ingest import write_inputs
from ._priority import InteractiveTraffic
from ._store import FileResult, InputRow, JobRow, JobStore
from .schemas import FINISHED, JobCounts, JobLinks, JobStatus

__all__ = ["JobService"]

log = logging.getLogger("service.jobs")
T = TypeVar("T")

_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_FLUSH_FILES = 64
_FLUSH_SECONDS = 0.25
_PAGE = 1000
_CODEC = "zlib"  # how new jobs' inputs are stored


def _time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class JobService:
    """Owns the job store and the background runner of one app.

    Args:
        settings: ``data_dir`` and the ``jobs_*`` limits.
        state: The service state whose engine and registry run the jobs.
    """

    def __init__(self, settings: Settings, state: ServiceState) -> None:
        self.settings = settings
        self.state = state
        self.store = JobStore(settings.data_dir / "jobs.sqlite3")
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._current: tuple[str, asyncio.Task[None]] | None = None
        self._last: tuple[float, str] | None = None  # (created, id) of the job that ran the last chunk
        self._swept_orphans = False
        self.traffic = InteractiveTraffic()
        #: What computes the jobs' files (``jobs_executor``); connected when the first job runs.
        self.executor = make_executor(settings, state, self.traffic)
        self._executor_started = False
        #: Why the executor's last start failed (shown by queued jobs); ``None`` once it has started.
        self._executor_failure: Notice | None = None
        #: The clock that decides when finished jobs expire and when to sweep (tests move it on).
        self.clock: Callable[[], float] = time.time

    @property
    def jobs_dir(self) -> Path:
        return self.settings.data_dir / "jobs"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the runner (call from the running event loop).

        Raises:
            DataDirBusy: the data folder holds a job database and another process owns it.
        """
        if self.store.path.exists():
            self.store.lock()  # refuse to start as a second owner of existing jobs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobs-db")
        self._task = asyncio.get_running_loop().create_task(self._main(), name="jobs-runner")

    async def stop(self) -> None:
        """Stop the runner; a running job stays ``running`` and resumes on the next start."""
        current = self._current  # the runner forgets it when cancelled below
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if current is not None:
            current[1].cancel()
            await asyncio.wait([current[1]])
            self._current = None
        if self._executor_started:
            self._executor_started = False
            await self.executor.stop()
        if self._executor is not None:
            await self._db(self.store.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    def _alternative_columns(self, models: list[str]) -> dict[str, list[str]]:
        """Property -> the refs of the job's other named models that answer it (a CSV column each)."""
        if len(models) < 2:
            return {}
        try:
            selection = self.state.require_ready()[0].select(models)
        except ServiceError:  # not ready, or a model unloaded since: no alternative columns
            return {}
        return {
            prop: [e.ref for e in selection.entries if prop in e.properties and e is not primary]
            for prop, primary in selection.primary.items()
        }

    async def _db(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a store call on the store's own thread."""
        if self._executor is None:
            raise RuntimeError("the job service is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def _open(self, *, create: bool) -> bool:
        """Open the database; without ``create``, only when it exists already."""
        if not self.store.is_open:
            if not create and not self.store.path.exists():
                return False
            await self._db(self.store.open)
        return True

    # -- the API's operations --------------------------------------------------------------

    def status(self, row: JobRow, queue_position: int | None = None) -> JobStatus:
        base = f"/v1/jobs/{row.id}"
        return JobStatus(
            id=row.id,
            state=row.state,
            counts=JobCounts(total=row.total, done=row.done, ok=row.n_ok, failed=row.n_failed),
            models=row.models,
            properties=row.properties,
            created=_time(row.created),
            started=_time(row.started),
            finished=_time(row.finished),
            expires=_time(row.finished + self.settings.jobs_ttl_s if row.finished is not None else None),
            error=Notice(code=row.error_code, detail=row.error_detail or "") if row.error_code else None,
            executor=row.executor,  # inprocess | ray, as stored
            strict=self._strict(row),
            queue_position=queue_position if row.state == "queued" else None,
            waiting=self._executor_failure if row.state == "queued" else None,
            links=JobLinks(self=base, results=f"{base}/results"),
        )

    async def create(
        self,
        files: Sequence[Upload],
        selection: Selection,
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
        strict: bool = False,
    ) -> tuple[JobStatus, bool]:
        """Store the files, compressed, as a new queued job.

        Args:
            files: The job's files (archives already unpacked; a file refused on upload carries its error).
            selection: The models the job runs.
            idempotency_key: A client's key for this submission: the same key returns the same job.
            owner: The name of the API key that submits it; only that key sees the job.
            strict: Refuse (as failed rows) structures the reader has warnings about.

        Returns:
            The job, and whether it is new (``False``: the idempotency key named an existing job).

        Raises:
            StorageFull: the job would pass ``jobs_max_storage_bytes`` or its key's
                ``jobs_max_storage_bytes_per_key``.
        """
        await self._open(create=True)
        if idempotency_key is not None:
            idempotency_key = idempotency_key if owner is None else f"{owner}\x00{idempotency_key}"
            existing = await self._db(self.store.find_key, idempotency_key)
            if existing is not None:
                return self.status(existing), False
        models = [e.ref for e in selection.entries] if selection.alternatives else []
        files = await asyncio.to_thread(_compress, files)
        size = sum(len(f.data) for f in files)  # charged as stored: compressed
        async with self._lock:
            used = await self._db(self.store.storage_bytes)
            limit = self.settings.jobs_max_storage_bytes
            if used + size > limit:
                raise StorageFull(
                    f"Stored jobs use {used:,} of {limit:,} bytes and this one needs {size:,}; "
                    "delete finished jobs (DELETE /v1/jobs/{id}) or wait for them to expire."
                )
            if owner is not None:
                mine, quota = (
                    await self._db(self.store.storage_bytes, owner),
                    self.settings.jobs_max_storage_bytes_per_key,
                )
                if mine + size > quota:
                    raise StorageFull(
                        f"The jobs of API key {owner!r} use {mine:,} of its {quota:,} bytes and this one needs "
                        f"{size:,}; delete finished jobs (DELETE /v1/jobs/{{id}}) or wait for them to expire."
                    )
            job_id = uuid.uuid4().hex
            folder = self.jobs_dir / job_id
            rows = await asyncio.to_thread(write_inputs, folder / "inputs.bin", files)
            try:
                await self._db(
                    self.store.create,
                    job_id=job_id,
                    created=time.time(),
                    models=models,
                    properties=list(selection.primary),
                    inputs=rows,
                    input_bytes=size,
                    idempotency_key=idempotency_key,
                    owner=owner,
                    input_codec=_CODEC,
                    strict=strict,
                )
            except sqlite3.IntegrityError:  # the same key, submitted twice at once
                await asyncio.to_thread(shutil.rmtree, folder, True)
                existing = await self._db(self.store.find_key, idempotency_key)
                if existing is None:
                    raise
                return self.status(existing), False
        log.info("job %s queued: %d files, %d bytes", job_id, len(rows), size)
        self._wake.set()
        return await self.get(job_id, owner), True

    async def _row(self, job_id: str, owner: str | None = None) -> JobRow:
        """The job; with ``owner`` (API keys on), only when that key created it."""
        row = None
        if _ID_RE.match(job_id) and await self._open(create=False):
            row = await self._db(self.store.get, job_id)
        if row is None or (owner is not None and row.owner != owner):
            raise JobNotFound(f"No job {job_id!r}: it never existed, was deleted, or expired.")
        return row

    async def _status(self, row: JobRow) -> JobStatus:
        """The job's status, with its place in the queue when it waits."""
        position = await self._db(self.store.queue_position, row) if row.state == "queued" else None
        return self.status(row, position)

    async def get(self, job_id: str, owner: str | None = None) -> JobStatus:
        """Raises: JobNotFound (also for another key's job)."""
        return await self._status(await self._row(job_id, owner))

    async def recent(self, limit: int, owner: str | None = None) -> list[JobStatus]:
        """The newest jobs (only ``owner``'s when given)."""
        if not await self._open(create=False):
            return []
        return [await self._status(r) for r in await self._db(self.store.recent, limit, owner)]

    async def delete(self, job_id: str, owner: str | None = None) -> JobStatus:
        """Cancel the job if it has not finished, then delete it with its inputs and results.

        Returns:
            Its last status (``cancelled`` when it had not finished).
        """
        async with self._lock:
            row = await self._row(job_id, owner)
            if self._current is not None and self._current[0] == job_id:
                self._current[1].cancel()
                await asyncio.wait([self._current[1]])
            row = await self._row(job_id, owner)
            await self._remove(job_id)
        status = self.status(row)
        if status.state not in FINISHED:
            status.state, status.finished = "cancelled", datetime.now(UTC)
        log.info("job %s deleted (%s)", job_id, status.state)
        return status

    async def _remove(self, job_id: str) -> None:
        await self._db(self.store.delete, job_id)
        await asyncio.to_thread(shutil.rmtree, self.jobs_dir / job_id, True)

    async def results(
        self,
        job_id: str,
        fmt: Literal["csv", "ndjson"],
        *,
        offset: int = 0,
        header: bool = True,
        owner: str | None = None,
    ) -> tuple[JobStatus, AsyncIterator[str]]:
        """The job's results so far, from row ``offset``, streamed a page at a time.

        Raises:
            JobNotFound.
        """
        row = await self._row(job_id, owner)
        alternatives = self._alternative_columns(row.models)

        async def pages() -> AsyncIterator[str]:
            position = offset
            if fmt == "csv" and header:
                yield csv_lines([], row.properties, header=True, alternatives=alternatives)
            while True:
                payloads = await self._db(self.store.results, job_id, position, _PAGE)
                if not payloads:
                    return
                position += len(payloads)
                yield (
                    csv_lines(payloads, row.properties, header=False, alternatives=alternatives)
                    if fmt == "csv"
                    else ndjson_lines(payloads)
                )
                if len(payloads) < _PAGE:
                    return

        return self.status(row), pages()

    # -- the runner ----------------------------------------------------------------------

    async def _main(self) -> None:
        last_sweep = -float("inf")
        sweep_every = min(60.0, max(0.5, self.settings.jobs_ttl_s / 4))
        while True:
            try:
                if await self._open(create=False):
                    if self.clock() - last_sweep >= sweep_every:
                        last_sweep = self.clock()
                        await self._sweep()
                    if self.state.ready and await self._run_next():
                        continue
            except DataDirBusy as exc:  # created by another process after this one started
                log.error("jobs are not run by this process: %s", exc.detail)
                await asyncio.sleep(30.0)
            except Exception:  # the runner never dies; the next round retries
                log.exception("job runner error")
                await asyncio.sleep(1.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=sweep_every if self.state.ready else 0.2)

    async def _sweep(self) -> None:
        """Delete expired jobs, and input folders left without a job by a crash."""
        async with self._lock:
            for job_id in await self._db(self.store.expired, self.clock() - self.settings.jobs_ttl_s):
                await self._remove(job_id)
                log.info("job %s expired and was deleted", job_id)
            if not self._swept_orphans and self.jobs_dir.is_dir():
                self._swept_orphans = True
                known = await self._db(self.store.job_ids)
                for folder in self.jobs_dir.iterdir():
                    if folder.name not in known:
                        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _run_next(self) -> bool:
        """Run one chunk of the next job in turn (round robin); ``False`` when no job waits."""
        if not self._executor_started:  # connected on the first job, outside the lock: submissions go on meanwhile
            if await self._db(self.store.next_runnable) is None:
                return False
            try:
                await self.executor.start()
            except Exception as failure:  # noqa: BLE001 - the jobs wait (queued), the service serves on
                why = ExecutorUnavailable(
                    f"The {self.executor.name} executor could not start ({type(failure).__name__}: {failure}); "
                    "the job waits, and the service tries again about a minute later."
                )
                self._executor_failure = Notice(code=why.code, detail=why.detail)
                log.error("jobs wait: %s", why.detail)
                await asyncio.sleep(10.0)
                return False
            self._executor_failure = None
            self._executor_started = True
        async with self._lock:
            row = await self._db(self.store.next_runnable, self._last)
            if row is None:
                return False
            task = asyncio.get_running_loop().create_task(self._run(row), name=f"job-{row.id}")
            self._current = (row.id, task)
        try:
            await asyncio.wait([task])
        finally:
            self._current = None
            self._last = (row.created, row.id)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("job %s failed", row.id, exc_info=exc)
            await self._db(
                self.store.finish, row.id, "failed", time.time(), ("internal_error", f"The job stopped: {exc}")
            )
        return True

    async def _run(self, row: JobRow) -> None:
        """Run the job's next chunk (``jobs_chunk`` files); finish it when none is left."""
        registry, _ = self.state.require_ready()
        try:
            selection = registry.select(row.models or None)
        except ServiceError as exc:
            await self._db(self.store.finish, row.id, "failed", time.time(), (exc.code, exc.detail))
            return
        await self._db(self.store.mark_running, row.id, time.time(), self.executor.name)
        if row.state == "queued" or self._last is None:  # started, or resumed after a restart
            log.info("job %s running (%d of %d files done)", row.id, row.done, row.total)
        try:
            fh = open(self.jobs_dir / row.id / "inputs.bin", "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            error = InputsMissing("The job's uploaded files are missing from the server's disk.")
            await self._db(self.store.finish, row.id, "failed", time.time(), (error.code, error.detail))
            return
        with fh:
            if pending := await self._db(self.store.pending, row.id, self.settings.jobs_chunk):
                files = await asyncio.to_thread(_read_files, fh, pending, row.input_codec, self.settings.max_file_bytes)
                await self._run_chunk(row.id, selection, pending, files, self._strict(row))
                if await self._db(self.store.pending, row.id, 1):
                    return  # its next chunk runs in its next turn
        await self._db(self.store.finish, row.id, "done", time.time())
        log.info("job %s done", row.id)

    def _strict(self, row: JobRow) -> bool:
        """The job's ``strict``; a job stored before the option follows the setting."""
        return self.settings.strict if row.strict is None else row.strict

    async def _run_chunk(
        self, job_id: str, selection: Selection, pending: list[InputRow], files: list[Upload], strict: bool
    ) -> None:
        """Run files through the executor and commit their results as they come."""
        buffer: list[FileResult] = []

        async def flush() -> None:
            nonlocal buffer
            if buffer:
                batch, buffer = buffer, []
                await self._db(self.store.record, job_id, batch)

        last_flush = time.monotonic()
        try:
            async with contextlib.aclosing(self.executor.run(selection, pending, files, strict=strict)) as done:
                async for result in done:
                    buffer.append(result)
                    if len(buffer) >= _FLUSH_FILES or time.monotonic() - last_flush >= _FLUSH_SECONDS:
                        last_flush = time.monotonic()
                        await flush()
        finally:
            await asyncio.shield(flush())


def _compress(files: Sequence[Upload]) -> list[Upload]:
    """Each file's bytes as stored in ``inputs.bin`` (zlib, level 1: CIFs shrink 3-5 times, fast)."""
    return [f if f.error is not None else Upload(f.filename, zlib.compress(f.data, 1)) for f in files]


def _read_files(fh: IO[bytes], pending: Sequence[InputRow], codec: str, max_bytes: int) -> list[Upload]:
    """The pending files' bytes from the job's ``inputs.bin`` (or the error found on upload).

    Args:
        fh: The job's ``inputs.bin``, open for reading.
        pending: The input rows still to read.
        codec: ``raw`` (jobs stored before compression) or ``zlib``.
        max_bytes: Most bytes a stored file may decompress to (it was checked on upload).
    """
    files = []
    for inp in pending:
        if inp.error_code is not None:
            error = ServiceError(inp.error_detail or inp.error_code, code=inp.error_code)
            files.append(Upload(inp.filename, error=error))
            continue
        fh.seek(inp.offset)
        data = fh.read(inp.length)
        if codec == _CODEC:
            try:
                data = zlib.decompressobj().decompress(data, max_bytes + 1)
            except zlib.error:
                files.append(Upload(inp.filename, error=InputsMissing("The stored file is damaged.")))
                continue
        files.append(Upload(inp.filename, data))
    return files
