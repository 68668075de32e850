"""A pool of parse worker processes in which every file has a deadline and a memory cap.

``concurrent.futures.ProcessPoolExecutor`` cannot stop one task: a file that parses for minutes
holds its worker for minutes, and a request that went away keeps it too. Here each worker is a
process of its own, talked to over a pipe, one file at a time, so that the pool can end exactly
the process that runs a file:

- **deadline**: a file still running ``timeout_s`` after its worker took it is stopped by
  killing that worker (:class:`ParseOutcome` ``timed_out``); a new worker takes its place;
- **memory cap**: each worker's address space is capped (``RLIMIT_AS``) at its size after
  start-up plus ``memory_bytes``, so a runaway allocation fails inside that worker instead of
  growing the machine; a worker that came near the cap (half of it) reports the task as
  ``heavy`` and exits after answering, handing its memory back;
- **cancellation**: when the awaiting coroutine is cancelled (its request disconnected, its
  job was deleted), the worker gets ``grace_s`` to finish, then is killed and replaced.

A worker that dies (killed by the operating system, a crash in C code) reports ``crashed``.
The deadline counts from the moment the worker is ready and has the file: start-up time and
time waiting for a free worker are not charged to the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

__all__ = ["ParseOutcome", "ParsePool"]

log = logging.getLogger("service.parse_pool")

#: A new worker has this long to import its libraries and say it is ready.
_STARTUP_S = 300.0


def _vm_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmSize``, ``VmPeak``); 0 where there is no /proc."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _worker_main(
    conn: Connection, initializer: Callable[..., None], initargs: tuple[Any, ...], memory_bytes: int
) -> None:
    """A worker: initialise, cap the address space, then run one task per message until told to stop."""
    initializer(*initargs)
    base = _vm_kib("VmSize") * 1024
    if memory_bytes > 0 and base > 0:
        cap = base + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(("ready", None, False))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if message is None:
            return
        fn, args = message
        try:
            outcome: tuple[str, Any, bool] = ("ok", fn(*args), False)
        except BaseException as exc:  # noqa: BLE001 - reported to the server, the worker goes on
            outcome = ("error", f"{type(exc).__name__}: {exc}", False)
        heavy = memory_bytes > 0 and base > 0 and _vm_kib("VmPeak") * 1024 > base + memory_bytes // 2
        try:
            conn.send((outcome[0], outcome[1], heavy))
        except (OSError, MemoryError):
            return
        if heavy:
            return  # hand the memory back; the pool starts a fresh worker


@dataclass(frozen=True)
class ParseOutcome:
    """What became of one task.

    Attributes:
        status: ``ok`` (``value`` is the result), ``error`` (``value`` is the exception's text),
            ``timed_out`` (stopped at the deadline) or ``crashed`` (the worker died).
        heavy: The worker came near its memory cap while running the task.
        seconds: Time from handing the task to the worker until its answer.
    """

    status: Literal["ok", "error", "timed_out", "crashed"]
    value: Any = None
    heavy: bool = False
    seconds: float = 0.0


class _Worker:
    def __init__(self, ctx: Any, initializer: Callable[..., None], initargs: tuple[Any, ...], memory: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(
            target=_worker_main, args=(child, initializer, initargs, memory), daemon=True, name="parse-worker"
        )
        self.process.start()
        child.close()  # only the worker holds its end: its death is seen as EOF here
        self.ready = False

    def exchange(self, task: tuple[Callable[..., Any], tuple[Any, ...]], timeout_s: float) -> ParseOutcome:
        """Send one task and wait for its answer (runs in a thread; ends when the process dies)."""
        try:
            if not self.ready:
                if not self.conn.poll(_STARTUP_S):
                    return ParseOutcome("crashed", "the worker did not start")
                self.conn.recv()
                self.ready = True
            self.conn.send(task)
            start = time.monotonic()
            if not self.conn.poll(timeout_s):
                return ParseOutcome("timed_out", seconds=time.monotonic() - start)
            status, value, heavy = self.conn.recv()
            return ParseOutcome(status, value, heavy, time.monotonic() - start)
        except (EOFError, OSError):
            return ParseOutcome("crashed", "the worker died")

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        """End the process; a thread waiting in :meth:`exchange` then sees EOF and returns."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def close(self) -> None:
        """Close this end of the pipe (only once no thread is waiting on it)."""
        with contextlib.suppress(OSError):
            self.conn.close()

    def join(self, timeout: float) -> None:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            self.process.join(timeout)


class ParsePool:
    """``size`` worker processes (spawned), each running one task at a time.

    Args:
        size: Worker processes.
        initializer: Called with ``initargs`` in each new worker.
        timeout_s: Deadline of one task, from the moment its worker has it.
        memory_bytes: Address space a worker may add to its start-up size (0: no cap).
        grace_s: After a cancellation, how long the worker may finish before it is killed.
    """

    def __init__(
        self,
        size: int,
        initializer: Callable[..., None],
        initargs: tuple[Any, ...] = (),
        *,
        timeout_s: float,
        memory_bytes: int,
        grace_s: float = 0.5,
    ) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self._initializer = initializer
        self._initargs = initargs
        self._memory = memory_bytes
        # spawn, not fork: the server process has threads (event loop, inference, torch).
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._threads = ThreadPoolExecutor(max_workers=2 * size, thread_name_prefix="parse-pool")
        self._reclaims: set[asyncio.Task[None]] = set()
        self._closed = False
        for _ in range(size):
            self._idle.put_nowait(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, self._initializer, self._initargs, self._memory)
        self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker whose pipe nobody waits on and, unless the pool is closing, start a new one."""
        worker.kill()
        worker.join(1.0)
        worker.close()
        self._all.discard(worker)
        if not self._closed:
            self._idle.put_nowait(self._spawn())

    def _release(self, worker: _Worker, outcome: ParseOutcome) -> None:
        if outcome.status in ("ok", "error") and not outcome.heavy and worker.alive:
            self._idle.put_nowait(worker)
        else:
            self._replace(worker)

    async def run(self, fn: Callable[..., Any], *args: Any) -> ParseOutcome:
        """Run ``fn(*args)`` in a worker (``fn`` and ``args`` must pickle).

        Raises:
            RuntimeError: the pool is closed.
        """
        if self._closed:
            raise RuntimeError("the parse pool is closed")
        worker = await self._idle.get()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, worker.exchange, (fn, args), self.timeout_s)
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            task = loop.create_task(self._reclaim(worker, future))
            self._reclaims.add(task)
            task.add_done_callback(self._reclaims.discard)
            raise
        if outcome.status == "timed_out":
            log.warning("a parse took more than %.1f s: its worker is stopped and replaced", self.timeout_s)
        elif outcome.status == "crashed":
            log.error("a parse worker died (%s); starting a new one", outcome.value)
        self._release(worker, outcome)
        return outcome

    async def _reclaim(self, worker: _Worker, future: asyncio.Future[ParseOutcome]) -> None:
        """A cancelled task: give its worker ``grace_s`` to finish, else kill and replace it."""
        try:
            outcome = await asyncio.wait_for(asyncio.shield(future), self.grace_s)
        except TimeoutError:
            log.info("a cancelled parse was still running after %.1f s: its worker is stopped", self.grace_s)
            worker.kill()
            with contextlib.suppress(Exception):
                await future  # the thread ends as soon as the process is gone
            self._replace(worker)
            return
        self._release(worker, outcome)

    async def close(self) -> None:
        """Stop every worker (busy ones are killed)."""
        self._closed = True
        for task in list(self._reclaims):
            task.cancel()
        idle = set()
        while not self._idle.empty():
            idle.add(worker := self._idle.get_nowait())
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        for worker in self._all - idle:
            worker.kill()
        deadline = time.monotonic() + 2.0
        for worker in list(self._all):
            await asyncio.to_thread(worker.join, max(0.0, deadline - time.monotonic()))
            worker.kill()
            worker.join(1.0)
            worker.close()
        self._all.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and diagnostics)."""
        return [w.process.pid for w in self._all if w.process.pid is not None]
