"""The FastAPI prediction service: ``create_app`` builds it, ``python -m service`` runs it."""

from __future__ import annotations

from .main import create_app
from .settings import Settings, get_settings

__all__ = ["create_app", "Settings", "get_settings"]
