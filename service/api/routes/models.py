"""``GET /v1/models`` and ``GET /v1/models/{name}``: the registry."""

from __future__ import annotations

from fastapi import APIRouter

from ...catalog import model_info, model_list
from ...schemas import ModelInfo, ModelList, Problem
from ..deps import RegistryDep

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", summary="Every loaded model, the default per property, refused folders")
async def list_models(registry: RegistryDep) -> ModelList:
    """Every loaded model version, the default model per property, and the folders refused with why."""
    return model_list(registry)


@router.get(
    "/{name}",
    summary="One model: its newest version, or name@version",
    responses={404: {"model": Problem, "description": "unknown_model"}},
)
async def get_model(name: str, registry: RegistryDep) -> ModelInfo:
    """One model (``name`` for its newest version, ``name@version`` for a given one)."""
    return model_info(registry, registry.get(name))
