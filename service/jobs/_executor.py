"""What runs a job's files: the executor boundary between the job service and the compute.

The job service owns the job store: it reads a chunk of pending files, hands them to its
executor, and commits each :class:`FileResult` the executor yields (its rows and its ``done``
flag in one transaction, :meth:`JobStore.record`). An executor only computes; progress, results,
cancel (the service cancels the iteration), expiry and resuming after a crash are the service's,
the same whatever runs the files.

- :class:`InProcessExecutor` (``CRYSTAL_JOBS_EXECUTOR=inprocess``, the default): this process's
  engine, its bulk parse pool and micro-batching inference workers, yielding to interactive
  requests (see ``_priority``).
- ``RayExecutor`` (``CRYSTAL_JOBS_EXECUTOR=ray``, :mod:`service.jobs._ray`): parse tasks and
  inference actors on a Ray cluster; imported only when chosen, so Ray stays an optional extra.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Protocol

from ..schemas import BatchError, BatchItem, Notice
from ..settings import Settings
from ..uploads import Upload
from ._priority import InteractiveTraffic, JobParseGate
from ._store import FileResult, InputRow

if TYPE_CHECKING:
    from ..registry import Selection
    from ..state import ServiceState

__all__ = ["JobExecutor", "InProcessExecutor", "file_result", "make_executor"]


def file_result(inp: InputRow, items: Sequence[BatchItem]) -> FileResult:
    """One file's rows as stored: each item's JSON with the file's ``index`` (one error row when it gave none)."""
    if not items:  # a file that gave no result at all
        notice = Notice(code="invalid_cif", detail="The file holds no CIF data block.")
        items = [BatchError(index=0, filename=inp.filename, error=notice)]
    return FileResult(inp.idx, [(i.ok, i.model_copy(update={"index": inp.idx}).model_dump_json()) for i in items])


class JobExecutor(Protocol):
    """Runs the files of a job and yields each file's results as soon as it has them.

    Attributes:
        name: What the job's status says ran it (``inprocess``, ``ray``).
    """

    name: str

    async def start(self) -> None:
        """Connect to what runs the files (called once, by the job runner, before the first job)."""

    async def stop(self) -> None:
        """Let go of it (files in flight are dropped: their jobs resume from the store)."""

    def run(
        self, selection: Selection, pending: Sequence[InputRow], files: Sequence[Upload], *, strict: bool
    ) -> AsyncGenerator[FileResult, None]:
        """The results of ``files`` (``pending[i]`` is ``files[i]``'s row), in the order they finish.

        ``strict``: the job's; a structure the reader has warnings about is a failed row.

        Cancelling the iteration (closing it) stops the files still running.
        """
        ...


class InProcessExecutor:
    """Today's runner: the service's own engine, ``jobs_parsing`` files in the bulk parse pool at a time.

    Args:
        settings: ``jobs_parsing``.
        state: The service state whose engine runs the files.
        traffic: Interactive requests in flight; while one is answered the job parses no new file beyond one.
    """

    name = "inprocess"

    def __init__(self, settings: Settings, state: ServiceState, traffic: InteractiveTraffic) -> None:
        self.settings = settings
        self.state = state
        self.traffic = traffic

    async def start(self) -> None:
        """Nothing to connect to: the engine is the service's."""

    async def stop(self) -> None:
        """Nothing to let go of."""

    async def run(
        self, selection: Selection, pending: Sequence[InputRow], files: Sequence[Upload], *, strict: bool
    ) -> AsyncGenerator[FileResult, None]:
        """Each file through :meth:`Engine.iter_files` (``bulk``), yielding to interactive requests."""
        _, engine = self.state.require_ready()
        gate = JobParseGate(self.settings.jobs_parsing, self.traffic)
        async with contextlib.aclosing(
            engine.iter_files(files, selection, gate=gate, bulk=True, strict=strict)
        ) as done:
            async for position, items in done:
                yield file_result(pending[position], items)


def make_executor(settings: Settings, state: ServiceState, traffic: InteractiveTraffic) -> JobExecutor:
    """The executor ``jobs_executor`` names.

    Raises:
        RuntimeError: ``ray`` without Ray installed (``pip install '.[ray]'``).
    """
    if settings.jobs_executor == "ray":
        from ._ray import RayExecutor  # Ray is an optional extra: imported only when chosen

        return RayExecutor(settings)
    return InProcessExecutor(settings, state, traffic)
