"""Interactive requests before jobs: a count of prediction requests in flight, kept by a middleware.

Jobs share the parse pool and the inference workers with interactive requests. While a
``/v1/predict`` request (single or batch) is being answered, the job runner starts no new file
beyond one, so the request queues behind at most the job's files already in the engine
(``jobs_in_flight``), and the job still advances one file at a time under constant traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["InteractiveTraffic", "InteractiveTrafficMiddleware"]

_INTERACTIVE_PREFIX = "/v1/predict"
_POLL_S = 0.005


class InteractiveTraffic:
    """How many interactive prediction requests are being answered."""

    def __init__(self) -> None:
        self.in_flight = 0

    async def wait_quiet(self, running: Callable[[], int]) -> None:
        """Return once no interactive request is in flight, or once ``running()`` (job files in the engine) is 0."""
        while self.in_flight > 0 and running() > 0:
            await asyncio.sleep(_POLL_S)


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
