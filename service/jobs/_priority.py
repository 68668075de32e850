"""Interactive requests before jobs: a count of prediction requests in flight, kept by a middleware.

Jobs share the parse pool and the inference workers with interactive requests. A job's files
enter the parse pool through a :class:`JobParseGate`: ``jobs_parsing`` at a time, and while a
``/v1/predict`` request (single or batch) is being answered, no new one beyond the first, so
the request's files queue behind at most ``jobs_parsing`` job files in the pool, and the job
still advances one file at a time under constant traffic. Parsed job structures wait for
inference without holding the gate, and join the same micro-batches as interactive ones.
A waiting file sleeps on a condition (:attr:`InteractiveTraffic.changed`), notified when a
request ends or a job file leaves the parse pool: no polling.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["InteractiveTraffic", "InteractiveTrafficMiddleware", "JobParseGate"]

_INTERACTIVE_PREFIX = "/v1/predict"


class InteractiveTraffic:
    """How many interactive prediction requests are being answered.

    Attributes:
        in_flight: Requests under ``/v1/predict`` being answered now.
        changed: Notified whenever ``in_flight`` drops or a job file leaves the parse pool.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.changed = asyncio.Condition()

    def started(self) -> None:
        """An interactive request arrived."""
        self.in_flight += 1

    async def finished(self) -> None:
        """An interactive request was answered: wake the job files waiting for a quiet moment."""
        self.in_flight -= 1
        await self.notify()

    async def notify(self) -> None:
        """Wake every waiter on :attr:`changed` (they re-check their own condition)."""
        async with self.changed:
            self.changed.notify_all()


class JobParseGate:
    """The async context manager a job's file holds while it is parsed.

    Args:
        size: Job files in the parse pool at a time.
        traffic: The interactive requests to yield to.
    """

    def __init__(self, size: int, traffic: InteractiveTraffic) -> None:
        self._slots = asyncio.Semaphore(size)
        self._traffic = traffic
        self.parsing = 0

    def _may_enter(self) -> bool:
        return self._traffic.in_flight == 0 or self.parsing == 0

    async def __aenter__(self) -> None:
        """Take a slot, then wait on the traffic's condition for a quiet moment.

        A quiet moment: no request is being answered, or no other file of this job is parsing.
        """
        await self._slots.acquire()
        try:
            if not self._may_enter():
                async with self._traffic.changed:
                    await self._traffic.changed.wait_for(self._may_enter)
        except BaseException:
            self._slots.release()
            raise
        self.parsing += 1

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Give the slot back; the last file out wakes the job files waiting behind a request."""
        self.parsing -= 1
        self._slots.release()
        if self.parsing == 0:
            await self._traffic.notify()


class InteractiveTrafficMiddleware:
    """Counts requests under ``/v1/predict`` in :class:`InteractiveTraffic` while they are answered."""

    def __init__(self, app: ASGIApp, traffic: InteractiveTraffic) -> None:
        self.app = app
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(_INTERACTIVE_PREFIX):
            await self.app(scope, receive, send)
            return
        self.traffic.started()
        try:
            await self.app(scope, receive, send)
        finally:
            await self.traffic.finished()
