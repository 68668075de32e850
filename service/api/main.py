"""All routes: health endpoints open, ``/v1`` behind the optional API key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .deps import require_api_key
from .routes import docs, health, jobs, models, page, predict

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(page.router)
api_router.include_router(docs.router)

_v1 = APIRouter(dependencies=[Depends(require_api_key)])
_v1.include_router(predict.router)
_v1.include_router(models.router)
_v1.include_router(jobs.router)
api_router.include_router(_v1)
