"""Typed dependencies: ``StateDep``, ``RegistryDep``, ``EngineDep``, ``SelectionDep``, ``LimitsDep``, ``StrictDep``."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import Depends, Header, Query, Request
from pydantic import SecretStr

from ..engine import Engine
from ..errors import Forbidden, Unauthorized
from ..metrics import Metrics
from ..registry import Registry, Selection
from ..state import ServiceState
from ..uploads import UploadLimits

__all__ = [
    "StateDep",
    "RegistryDep",
    "EngineDep",
    "SelectionDep",
    "LimitsDep",
    "StrictDep",
    "MetricsDep",
    "require_api_key",
    "require_admin",
    "OwnerDep",
]


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_registry(state: StateDep) -> Registry:
    return state.require_registry()


def get_engine(state: StateDep) -> Engine:
    return state.require_ready()[1]


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


def get_limits(state: StateDep) -> UploadLimits:
    return UploadLimits.from_settings(state.settings)


RegistryDep = Annotated[Registry, Depends(get_registry)]
EngineDep = Annotated[Engine, Depends(get_engine)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
LimitsDep = Annotated[UploadLimits, Depends(get_limits)]


def get_selection(
    state: StateDep,
    models: Annotated[
        str | None,
        Query(
            description="Comma-separated model names (``name`` or ``name@version``); "
            "default: the registry's default model for each property.",
            examples=["cgcnn-formation-energy,sr-cgcnn-band-gap"],
        ),
    ] = None,
    uncertainty: Annotated[
        Literal["distance", "ensemble"],
        Query(
            description="How sigma is made: ``distance`` (default: embedding distance to the training crystals, "
            "nearly free) or ``ensemble`` (also runs each model's partner of the other architecture and combines "
            "their spread with the distance: sharper sigma, about twice the model cost).",
        ),
    ] = "distance",
) -> Selection:
    registry, _ = state.require_ready()
    refs = [ref.strip() for ref in (models or "").split(",") if ref.strip()]
    return registry.select(refs or None, ensemble=uncertainty == "ensemble")


SelectionDep = Annotated[Selection, Depends(get_selection)]


def get_strict(
    state: StateDep,
    strict: Annotated[
        bool | None,
        Query(
            description="Refuse (422, with the warning's code) a structure the reader has warnings about, "
            "instead of answering with warnings; default: the service's `strict` setting."
        ),
    ] = None,
) -> bool:
    return state.settings.strict if strict is None else strict


StrictDep = Annotated[bool, Depends(get_strict)]


def _key_owner(keys: dict[str, SecretStr], given: str) -> str | None:
    """The name of the key ``given`` matches (every key compared, in constant time each)."""
    owner = None
    for name, key in keys.items():
        if secrets.compare_digest(given.encode(), key.get_secret_value().encode()):
            owner = name
    return owner


async def require_api_key(
    request: Request,
    state: StateDep,
    x_api_key: Annotated[str | None, Header(description="Required when the service has keys.")] = None,
) -> None:
    """Refuse ``/v1`` requests without a right ``X-API-Key`` when keys are set (``CRYSTAL_API_KEY(S)``).

    The key's name (``default`` for ``CRYSTAL_API_KEY``) owns the jobs the request creates.
    """
    keys = dict(state.settings.api_keys)
    if state.settings.api_key is not None:
        keys["default"] = state.settings.api_key
    request.state.owner = None
    if not keys:
        return
    owner = _key_owner(keys, x_api_key) if x_api_key is not None else None
    if owner is None:
        raise Unauthorized("Send the service's API key in the X-API-Key header.")
    request.state.owner = owner


def require_admin(request: Request, state: StateDep) -> None:
    """Refuse (403 ``forbidden``) a key that is not in ``admin_keys``; without keys anyone may (loopback)."""
    owner: str | None = getattr(request.state, "owner", None)
    if owner is not None and owner not in state.settings.admin_keys:
        raise Forbidden(f"API key {owner!r} may not reload the models; admin keys: CRYSTAL_ADMIN_KEYS.")


def get_owner(request: Request) -> str | None:
    """Who owns the jobs of this request: its API key's name, or ``None`` when keys are off."""
    owner: str | None = getattr(request.state, "owner", None)
    return owner


OwnerDep = Annotated[str | None, Depends(get_owner)]
