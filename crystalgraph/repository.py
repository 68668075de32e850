"""A model repository on disk (``<root>/<name>/<version>/``): its folders, versions and default models.

The rules live here once, for the service's registry and the offline :class:`~crystalgraph.Predictor`
alike: which folders are model versions, how versions sort, what ``name``, ``name@version``,
``name@latest`` and ``default`` mean, and which model answers a property by default (a
configured override, else the newest version with the lowest validation MAE for it), and which
models a request runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "RepositoryModel",
    "version_key",
    "model_folders",
    "latest_versions",
    "parse_ref",
    "find_model",
    "validation_mae",
    "choose_defaults",
    "select_models",
]


class RepositoryModel(Protocol):
    """What the repository rules read of a loaded model version."""

    @property
    def name(self) -> str:
        """The model name."""
        ...

    @property
    def version(self) -> str:
        """The version."""
        ...

    @property
    def properties(self) -> list[str]:
        """The properties it predicts (not metal probabilities)."""
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """The manifest's metadata (metrics)."""
        ...


M = TypeVar("M", bound=RepositoryModel)


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural sort key: ``"10" > "9"``, ``"2024-06-01" > "2024-05-30"``, ``"v2" > "v1"``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[^\d]+", version))


def model_folders(root: Path) -> list[Path]:
    """Every ``<root>/<name>/<version>/`` folder, sorted; hidden folders (``.tmp``...) are skipped.

    A missing ``root`` gives ``[]``.
    """
    if not root.is_dir():
        return []
    folders = []
    for name_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        folders.extend(sorted(p for p in name_dir.iterdir() if p.is_dir() and not p.name.startswith(".")))
    return folders


def latest_versions(models: Iterable[M]) -> dict[str, M]:
    """The newest version of each model name (by :func:`version_key`)."""
    latest: dict[str, M] = {}
    for model in sorted(models, key=lambda m: (m.name, version_key(m.version))):
        latest[model.name] = model
    return latest


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name`` or ``name@latest`` -> ``(name, None)`` (the newest version); ``name@version`` -> both."""
    name, _, version = ref.strip().partition("@")
    return name, (version if version and version != "latest" else None)


def find_model(ref: str, latest: Mapping[str, M], models: Iterable[M]) -> M | None:
    """The model a reference names among ``models`` (``latest``: each name's newest), or ``None``."""
    name, version = parse_ref(ref)
    if version is None:
        return latest.get(name)
    return next((m for m in models if m.name == name and m.version == version), None)


def validation_mae(model: RepositoryModel, prop: str) -> float | None:
    """``metadata.metrics.val[prop].mae`` when it is a finite number."""
    try:
        value = model.metadata["metrics"]["val"][prop]["mae"]
    except (KeyError, TypeError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def choose_defaults(
    latest: Mapping[str, M], find: Callable[[str], M | None], overrides: Mapping[str, str] | None = None
) -> tuple[dict[str, M], list[str]]:
    """The default model of each property.

    Args:
        latest: The newest version of each model name (:func:`latest_versions`).
        find: Resolves an override (``name``, ``name@version``) to a loaded model, or ``None``.
        overrides: ``{property: ref}`` chosen by configuration.

    Returns:
        ``{property: model}`` over every property some newest version predicts (an override
        when it names a loaded model predicting the property, else the lowest validation MAE,
        else the first by name), and sentences for overrides that could not be honoured.
    """
    overrides = overrides or {}
    candidates: dict[str, list[M]] = {}
    for model in latest.values():
        for prop in model.properties:
            candidates.setdefault(prop, []).append(model)
    defaults: dict[str, M] = {}
    problems: list[str] = []
    for prop, models in sorted(candidates.items()):
        override = overrides.get(prop)
        if override is not None:
            chosen = find(override)
            if chosen is not None and prop in chosen.properties:
                defaults[prop] = chosen
                continue
            problems.append(f"default for {prop}: {override!r} is not a loaded model predicting {prop}; choosing one")
        scored = [(validation_mae(m, prop), m) for m in models]
        with_mae = [(mae, m) for mae, m in scored if mae is not None]
        defaults[prop] = min(with_mae, key=lambda t: t[0])[1] if with_mae else models[0]
    for prop in sorted(set(overrides) - set(candidates)):
        problems.append(f"default for {prop}: no loaded model predicts {prop}")
    return defaults, problems


def select_models(
    refs: Sequence[str] | None, defaults: Mapping[str, M], get: Callable[[str], M]
) -> tuple[tuple[M, ...], dict[str, M], bool]:
    """The models a request runs: those named (in that order), else the default of each property.

    ``default`` among the names stands for the default models; ``name@latest`` is ``name``.

    Args:
        refs: Model references (``name``, ``name@version``, ``name@latest``, ``default``), or none.
        defaults: The default model of each property (:func:`choose_defaults`).
        get: Resolves one reference to a loaded model (raising when there is none).

    Returns:
        The models (each once), the model answering each property, and whether the other
        models' answers are alternatives (models were named).
    """
    if not refs:
        # a multi-task default answers only the properties it is the default for
        chosen = tuple(dict.fromkeys(defaults[prop] for prop in sorted(defaults)))
        return chosen, dict(sorted(defaults.items())), False
    models: list[M] = []
    for ref in refs:
        if ref.strip() == "default":
            models.extend(defaults[prop] for prop in sorted(defaults))
        else:
            models.append(get(ref))
    entries = tuple(dict.fromkeys(models))
    primary: dict[str, M] = {}
    for model in entries:
        for prop in model.properties:
            primary.setdefault(prop, model)
    return entries, primary, True
