"""``/healthz`` (alive), ``/readyz`` (models loaded and warm) and ``/metrics`` (Prometheus); always open."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ...schemas import Health, Problem, Readiness
from ..deps import MetricsDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    """Liveness: ``200`` while the process answers, whether or not models are loaded."""
    return Health()


@router.get(
    "/readyz",
    summary="Every model is loaded and warmed up",
    responses={503: {"model": Problem, "description": "not_ready: loading, or no model to serve"}},
)
async def readyz(state: StateDep) -> Readiness:
    """Readiness: ``200`` with the model count and properties once every model is loaded and warm, else ``503``."""
    registry, _ = state.require_ready()
    return Readiness(models=len(registry), properties=registry.properties)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Request, structure, latency and model metrics in the Prometheus text format."""
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)
