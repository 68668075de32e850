"""HTTP layer: thin routes over the registry and the engine."""

from __future__ import annotations

from .main import api_router

__all__ = ["api_router"]
