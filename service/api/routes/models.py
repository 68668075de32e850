"""``GET /v1/models``, ``GET /v1/models/{name}``: the registry; ``POST /v1/models/reload``: take in new models."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ...catalog import model_info, model_list
from ...schemas import ModelInfo, ModelList, Problem, ReloadReport
from ..deps import RegistryDep, StateDep, require_admin

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


@router.post(
    "/reload",
    summary="Load new, changed and removed model folders without a restart",
    dependencies=[Depends(require_admin)],
    responses={
        403: {"model": Problem, "description": "forbidden: the API key is not an admin key"},
        503: {"model": Problem, "description": "not_ready"},
    },
)
async def reload_models(state: StateDep) -> ReloadReport:
    """Compare the model folders with those loaded; load, check and warm up the new and changed ones.

    They serve once they passed their checks (manifest, sha256, ONNX parity, warm-up), in one
    swap: requests under way finish on the models they started with. A folder that fails is
    listed in ``refused`` and the rest serve on.
    """
    return await state.reload()
