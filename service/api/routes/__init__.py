"""One router per resource, each module holding one ``router``; ``service.api.main`` joins them.

- :mod:`.health`: ``/healthz``, ``/readyz`` and ``/metrics`` (open, no API key).
- :mod:`.page`: the web page at ``/`` and its ``/static`` files (open).
- :mod:`.docs`: the API reference at ``/docs`` and its Swagger UI files, served locally (open).
- :mod:`.predict`: ``POST /v1/predict`` and ``POST /v1/predict/batch``.
- :mod:`.models`: ``GET /v1/models`` and ``GET /v1/models/{name}``.
- :mod:`.jobs`: ``/v1/jobs``: batch jobs, their status, results and deletion.
"""

from __future__ import annotations

from . import docs, health, jobs, models, page, predict

__all__ = ["docs", "health", "jobs", "models", "page", "predict"]
