"""Prometheus metrics of one app instance, and the ASGI middleware that times every request.

Each app owns a :class:`Metrics` with its own ``CollectorRegistry`` (no process-global state),
so several apps (tests) never share or double-register counters.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The service's counters and histograms (names prefixed ``crystal_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "crystal_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "crystal_http_request_duration_seconds",
            "HTTP request latency by route, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.structures = Counter(
            "crystal_structures_predicted", "Structures predicted (ok) or refused (failed).", ["outcome"], registry=r
        )
        self.batch_files = Histogram(
            "crystal_batch_files",
            "Files per batch request (archive members included).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )
        self.inference_batch = Histogram(
            "crystal_inference_batch_structures",
            "Structures per model micro-batch.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "crystal_model_inference_seconds",
            "Seconds per model micro-batch.",
            ["model"],
            buckets=_INFERENCE_BUCKETS,
            registry=r,
        )
        self.parse_failures = Counter(
            "crystal_parse_failures",
            "Files or data blocks that could not be predicted, by error code.",
            ["code"],
            registry=r,
        )
        self.parse_seconds = Histogram(
            "crystal_parse_seconds",
            "Seconds to parse one CIF and build its graphs in a worker (incl. queueing).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.models_loaded = Gauge("crystal_models_loaded", "Model versions loaded.", registry=r)
        self.ready = Gauge("crystal_ready", "1 once every model is loaded and warmed up.", registry=r)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times HTTP requests by route template (``/v1/models/{name}``), method and status.

    Requests that match no route are labelled ``unmatched`` so that scanning unknown paths
    cannot grow the label set.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count and time one HTTP request (other ASGI messages pass through)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            labels = (label, scope.get("method", ""), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.request_seconds.labels(*labels).observe(time.perf_counter() - start)
