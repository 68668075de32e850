"""Hot reload: new, changed and removed model folders, taken in without a restart.

A reload compares each folder of the repository with what was seen last (its files' names,
sizes and modification times: :func:`~service.repository.folder_signature`). Unchanged folders
keep their loaded models, untouched. New and changed ones are loaded aside, then checked before
they serve:

- the manifest, sha256 and config checks of every load (:mod:`service.repository`);
- a model served by onnxruntime must agree with its own ``weights.pt`` on the parity batches
  (``crystalgraph.check_parity``, max |difference| 1e-4, the export's gate): a ``model.onnx``
  swapped without its weights is refused;
- the warm-up (:func:`service.warmup.warm_up`): it predicts the warm-up crystals on its
  inference worker, with finite answers, and its batch invariance is recorded.

Only then is the new registry swapped in, in one assignment: a request that started before it
finishes on the models it selected (a selection holds its models, not the registry), and one
that starts after it sees the new set. A folder refused is listed in ``refused`` with its
reason and leaves the rest serving; a changed folder that is refused leaves its previous,
loaded version serving. Removed folders stop being served.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystalgraph import check_parity, collate, load_exported, model_folders

from .engine import Engine
from .registry import ModelEntry, RefusedModel, Registry
from .repository import folder_signature, load_folders
from .schemas import RefusedModelInfo, ReloadReport
from .settings import Settings
from .warmup import _pair_graph, warm_up

__all__ = ["reload_models"]

log = logging.getLogger("service.reload")


@dataclass
class _Plan:
    """What a reload does: the folders to load, the entries kept and dropped, the signatures seen."""

    load: list[Path]
    keep: list[ModelEntry]
    keep_refused: list[RefusedModel]
    removed: list[ModelEntry]
    signatures: dict[str, str]


def _plan(models_dir: Path, registry: Registry, seen: dict[str, str]) -> _Plan:
    signatures = {str(folder): folder_signature(folder) for folder in model_folders(models_dir)}
    changed = [Path(f) for f, sig in signatures.items() if seen.get(f) != sig]
    changed_names = {str(f) for f in changed}
    keep = [e for e in registry.entries if str(e.folder) in signatures and str(e.folder) not in changed_names]
    removed = [e for e in registry.entries if str(e.folder) not in signatures]
    keep_refused = [r for r in registry.refused if r.path in signatures and r.path not in changed_names]
    return _Plan(changed, keep, keep_refused, removed, signatures)


def _check(entry: ModelEntry) -> None:
    """The checks before a loaded model may serve (besides the warm-up): ONNX parity, finite answers.

    Raises:
        crystalgraph.OnnxParityError: ``model.onnx`` disagrees with ``weights.pt``.
        ValueError: non-finite predictions.
    """
    if entry.predictor.backend == "onnx":
        check_parity(load_exported(entry.folder).model, entry.folder / "model.onnx")
    out = entry.predictor.predict(collate([_pair_graph()]))
    if not np.isfinite(out).all():
        raise ValueError("the model predicts non-finite values")


async def reload_models(
    settings: Settings, engine: Engine, registry: Registry, seen: dict[str, str], *, device: str, precision: str
) -> tuple[Registry, ReloadReport, dict[str, str]]:
    """Load what changed in the repository since ``seen`` and build the registry to serve next.

    Args:
        settings: ``models_dir``, backends and default overrides.
        engine: The running engine (warm-up runs on its parse pool and inference workers).
        registry: The registry being served (left untouched).
        seen: :func:`folder_signature` of each folder at the last (re)load.
        device: The resolved device.
        precision: The resolved precision.

    Returns:
        The new registry, the report, and the signatures to compare with next time.
    """
    plan = await asyncio.to_thread(_plan, settings.models_dir, registry, seen)
    loaded, refused = await asyncio.to_thread(
        load_folders,
        plan.load,
        backend=settings.backend,
        device=device,
        precision=precision,
        model_backends=settings.model_backends,
    )
    checked: list[ModelEntry] = []
    for entry in loaded:
        try:
            await asyncio.to_thread(_check, entry)
        except Exception as exc:  # noqa: BLE001 - a model that fails its checks is refused, the rest serve
            log.error("refusing model %s: %s", entry.ref, exc)
            refused.append(RefusedModel(path=str(entry.folder), reason=f"check failed: {type(exc).__name__}: {exc}"))
            continue
        checked.append(entry)
    report = await warm_up(engine, checked) if checked else None
    if report is not None:
        for entry, reason in report.failed.items():
            refused.append(RefusedModel(path=str(entry.folder), reason=reason))
        checked = [e for e in checked if e not in report.failed]

    new_refs = {e.ref for e in checked}
    previous = {str(e.folder): e for e in registry.entries}
    kept = [e for e in plan.keep if e.ref not in new_refs]
    for refusal in refused:  # a changed folder that fails: its loaded version goes on serving
        old = previous.get(refusal.path)
        if old is not None and old not in plan.removed and old.ref not in new_refs:
            kept.append(old)
    refusals = [
        RefusedModel(r.path, r.reason + ("; the version loaded before goes on serving" if r.path in previous else ""))
        for r in refused
    ]
    new = Registry([*kept, *checked], [*plan.keep_refused, *refusals], settings.defaults)
    new.batch_invariant.update({e: ok for e, ok in registry.batch_invariant.items() if e in kept})
    if report is not None:
        new.batch_invariant.update(report.batch_invariant)
    old_refs = {e.ref for e in registry.entries}
    summary = ReloadReport(
        added=sorted(new_refs - old_refs),
        replaced=sorted(new_refs & old_refs),
        removed=sorted(e.ref for e in plan.removed if e.ref not in new_refs),
        refused=[RefusedModelInfo(path=r.path, reason=r.reason) for r in refusals],
        defaults={prop: e.ref for prop, e in new.defaults.items()},
        models=len(new),
    )
    if summary.added or summary.replaced or summary.removed or summary.refused:
        log.info(
            "models reloaded: added %s, replaced %s, removed %s, refused %s",
            summary.added,
            summary.replaced,
            summary.removed,
            [r.path for r in summary.refused],
        )
    return new, summary, plan.signatures
