"""What ``/v1/models`` says about each loaded model, read from its manifest and backend."""

from __future__ import annotations

import functools
import math
from typing import Any

from .registry import ModelEntry, Registry
from .schemas import (
    GraphSettings,
    ModelInfo,
    ModelList,
    ParameterCounts,
    PropertyInfo,
    Provenance,
    RefusedModelInfo,
    TrainingSet,
    UncertaintyInfo,
)

__all__ = ["model_info", "model_list", "provenance", "graph_settings"]


def _metrics(metadata: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``metadata.metrics`` keeping only finite numbers (the metadata is free-form)."""
    raw = metadata.get("metrics")
    out: dict[str, dict[str, dict[str, float]]] = {}
    if not isinstance(raw, dict):
        return out
    for split, by_prop in raw.items():
        if not isinstance(by_prop, dict):
            continue
        for prop, values in by_prop.items():
            if not isinstance(values, dict):
                continue
            numbers = {
                k: float(v)
                for k, v in values.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            }
            if numbers:
                out.setdefault(str(split), {})[str(prop)] = numbers
    return out


def _training_set(metadata: dict[str, Any]) -> TrainingSet:
    dataset = metadata.get("dataset")
    if not isinstance(dataset, dict):
        return TrainingSet()
    fields = {k: dataset.get(k) for k in TrainingSet.model_fields}
    try:
        return TrainingSet.model_validate(fields)
    except ValueError:
        return TrainingSet(fingerprint=str(dataset.get("fingerprint")) if dataset.get("fingerprint") else None)


def graph_settings(entry: ModelEntry) -> GraphSettings:
    """How this model's graphs are built, with the settings' fingerprint."""
    return GraphSettings(fingerprint=entry.graph.fingerprint, **entry.graph.model_dump())


@functools.lru_cache(maxsize=1024)
def provenance(entry: ModelEntry) -> Provenance:
    """What a prediction of this model traces back to (computed once per loaded model)."""
    return Provenance(
        model=entry.name,
        version=entry.version,
        weights_sha256=entry.weights_sha256,
        training_set=_training_set(entry.metadata).fingerprint,
        graph=graph_settings(entry),
    )


def model_info(registry: Registry, entry: ModelEntry) -> ModelInfo:
    """The registry's description of one model version."""
    metrics = _metrics(entry.metadata)
    test = metrics.get("test", {})
    elements = entry.elements
    return ModelInfo(
        name=entry.name,
        version=entry.version,
        ref=entry.ref,
        latest=registry.latest.get(entry.name) is entry,
        architecture=entry.config.model_type,
        properties=[
            PropertyInfo(
                name=t.name,
                unit=t.unit,
                p_metal=t.name in entry.gated,
                sigma=entry.uncertainty is not None and t.name in entry.uncertainty.estimator.knots,
            )
            for t in entry.targets
            if not t.is_probability
        ],
        default_for=registry.default_for(entry),
        parameters=ParameterCounts(**entry.parameters),
        graph=graph_settings(entry),
        test_mae={prop: values["mae"] for prop, values in test.items() if "mae" in values},
        metrics=metrics,
        training_set=_training_set(entry.metadata),
        elements=sorted(elements) if elements is not None else None,
        backend=entry.predictor.backend,
        device=entry.predictor.device,
        provider=entry.predictor.provider,
        precision=entry.predictor.precision,
        batch_invariant=registry.batch_invariant.get(entry),
        sha256=entry.weights_sha256,
        created=str(entry.manifest["created"]) if entry.manifest.get("created") else None,
        uncertainty=uncertainty_info(entry),
    )


def _numbers(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def uncertainty_info(entry: ModelEntry) -> UncertaintyInfo | None:
    """What ``/v1/models`` says of the model's sigma (``None``: it has none)."""
    unc = entry.uncertainty
    if unc is None:
        return None
    props = {str(p): v for p, v in unc.info.get("properties", {}).items() if isinstance(v, dict)}

    def figures(v: dict) -> dict[str, dict[str, float]]:
        return {split: _numbers(v.get(split)) for split in ("val", "test") if v.get(split)}

    # A property whose shipped sigma combines a partner model's spread keeps the single-model sigma
    # (what answers carry unless ``?uncertainty=ensemble``) under "default".
    calibration = {p: figures(v["default"] if isinstance(v.get("default"), dict) else v) for p, v in props.items()}
    partners = unc.info.get("partners") or {}
    ensemble = {p: figures(v) for p, v in props.items() if isinstance(v.get("default"), dict) and p in partners}
    d = unc.domain
    dens = d.get("density_g_cm3")
    return UncertaintyInfo(
        method=unc.method,
        how=unc.how,
        calibration=calibration,
        calibration_ensemble=ensemble,
        ood_threshold=unc.estimator.ood_threshold,
        max_atoms=d.get("max_atoms") if isinstance(d.get("max_atoms"), int) else None,
        density_g_cm3=[float(x) for x in dens] if isinstance(dens, list) else None,
        rare_below=d.get("rare_below") if isinstance(d.get("rare_below"), int) else None,
    )


def model_list(registry: Registry) -> ModelList:
    """Every loaded model, the default per property, and the refused folders."""
    return ModelList(
        models=[model_info(registry, e) for e in registry.entries],
        defaults={prop: e.ref for prop, e in sorted(registry.defaults.items())},
        refused=[RefusedModelInfo(path=r.path, reason=r.reason) for r in registry.refused],
    )
