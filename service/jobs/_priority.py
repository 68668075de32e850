"""Interactive requests before jobs: a count of prediction requests in flight, kept by a middleware.

Jobs share the parse pool and the inference workers with interactive requests. A job's files
enter the parse pool through a :class:`JobParseGate`: ``jobs_parsing`` at a time, and while a
``/v1/predict`` request (single or batch) is being answered, no new one beyond the first, so
the request's files queue behind at most ``jobs_parsing`` job files in the pool, and the job
still advances one file at a time under constant traffic. Parsed job structures wait for
inference without holding the gate, and join the same micro-batches as interactive ones.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["InteractiveTraffic", "InteractiveTrafficMiddleware", "JobParseGate"]

_INTERACTIVE_PREFIX = "/v1/predict"
_POLL_S = 0.005


class InteractiveTraffic:
    """How many interactive prediction requests are being answered."""

    def __init__(self) -> None:
        self.in_flight = 0


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

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        try:
            while self._traffic.in_flight > 0 and self.parsing > 0:
                await asyncio.sleep(_POLL_S)
        except BaseException:
            self._slots.release()
            raise
        self.parsing += 1

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.parsing -= 1
        self._slots.release()


class InteractiveTrafficMiddleware:
    """Counts requests under ``/v1/predict`` in :class:`InteractiveTraffic` while they are answered."""

    def __init__(self, app: ASGIApp, traffic: InteractiveTraffic) -> None:
        self.app = app
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(_INTERACTIVE_PREFIX):
            await self.app(scope, receive, send)
            return
        self.traffic.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.traffic.in_flight -= 1
