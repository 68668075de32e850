"""The model registry: loaded model versions, the newest of each name, defaults per property.

A reference ``name`` means a model's newest version, ``name@version`` a given one. Folders that
could not be loaded are listed in :attr:`Registry.refused` (see :mod:`service.repository`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from crystalgraph import (
    GraphConfig,
    ManifestFacts,
    ModelConfig,
    choose_defaults,
    find_model,
    latest_versions,
    select_models,
    version_key,
)

from .backends import Predictor
from .errors import ModelNotFound
from .uncertainty import ModelUncertainty

__all__ = ["ModelEntry", "RefusedModel", "Selection", "Registry", "version_key"]

log = logging.getLogger("service.registry")


@dataclass(frozen=True, eq=False)
class ModelEntry(ManifestFacts):
    """One loaded model version.

    Attributes:
        name: Folder name under the repository (``cgcnn-formation-energy``).
        version: Version folder name (``1``).
        folder: The model folder.
        config: The model config from the manifest (architecture, targets, graph settings).
        manifest: The parsed ``manifest.json``.
        predictor: The backend object that runs it.
        parameters: ``{"total", "conv"}`` parameter counts.
        fingerprint: The graph settings' fingerprint (computed once).
        uncertainty: Calibrated sigma and domain checks, when the folder ships them.
    """

    name: str
    version: str
    folder: Path
    config: ModelConfig
    manifest: dict[str, Any]
    predictor: Predictor
    parameters: dict[str, int]
    fingerprint: str = ""
    uncertainty: ModelUncertainty | None = None

    def __post_init__(self) -> None:
        # GraphConfig.fingerprint hashes JSON on every access; requests need it per structure.
        object.__setattr__(self, "fingerprint", self.config.graph.fingerprint)

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of ``weights.pt`` as the manifest lists it."""
        entry = self.manifest.get("files", {}).get("weights", {})
        return entry.get("sha256") if isinstance(entry, dict) else None

    def metric(self, split: str, prop: str, name: str = "mae") -> float | None:
        """A number from ``metadata.metrics[split][prop][name]``, ``None`` when absent."""
        try:
            value = self.metadata["metrics"][split][prop][name]
        except (KeyError, TypeError):
            return None
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
        return None


@dataclass(frozen=True)
class RefusedModel:
    """A model folder that was not loaded, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Selection:
    """The models one request runs.

    Attributes:
        entries: Models to run, in the order asked for (each once).
        primary: For each property, the model whose answer goes in ``predictions``.
        alternatives: Whether the other models' answers for a property are returned (in
            ``alternatives``): when models were named, not for the defaults.
        companions: Models run only for the uncertainty of the others (the second member of a
            property's 2-model ensemble); their answers are not returned.
    """

    entries: tuple[ModelEntry, ...]
    primary: dict[str, ModelEntry]
    alternatives: bool = False
    companions: tuple[ModelEntry, ...] = ()

    @property
    def runs(self) -> tuple[ModelEntry, ...]:
        """Every model to run: the entries, then the companions."""
        return self.entries + self.companions

    @cached_property
    def graph_configs(self) -> tuple[GraphConfig, ...]:
        """One graph config per distinct graph fingerprint among the models to run."""
        seen: dict[str, GraphConfig] = {}
        for entry in self.runs:
            seen.setdefault(entry.fingerprint, entry.graph)
        return tuple(seen.values())


class Registry:
    """Loaded models, the newest version of each name, and the default model per property.

    Args:
        entries: Loaded models.
        refused: Folders that were not loaded.
        default_overrides: ``{property: "name" | "name@version"}`` from the settings.
    """

    def __init__(
        self,
        entries: Iterable[ModelEntry],
        refused: Iterable[RefusedModel] = (),
        default_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.entries: tuple[ModelEntry, ...] = tuple(sorted(entries, key=lambda e: (e.name, version_key(e.version))))
        self.refused: tuple[RefusedModel, ...] = tuple(refused)
        self._overrides = dict(default_overrides or {})
        self.latest: dict[str, ModelEntry] = latest_versions(self.entries)
        self.defaults: dict[str, ModelEntry] = self._choose_defaults()
        #: Result of the warm-up check that answers do not depend on the batch (see service.warmup).
        self.batch_invariant: dict[ModelEntry, bool] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def properties(self) -> list[str]:
        """Every property some loaded model answers by default, sorted."""
        return sorted(self.defaults)

    def _choose_defaults(self) -> dict[str, ModelEntry]:
        defaults, problems = choose_defaults(self.latest, self._find, self._overrides)
        for problem in problems:
            log.error("%s", problem)
        return defaults

    def _find(self, ref: str) -> ModelEntry | None:
        return find_model(ref, self.latest, self.entries)

    def get(self, ref: str) -> ModelEntry:
        """The model ``name`` (newest version) or ``name@version``.

        Raises:
            ModelNotFound: no such model is loaded.
        """
        entry = self._find(ref)
        if entry is None:
            known = ", ".join(sorted(self.latest)) or "none"
            raise ModelNotFound(f"No model {ref!r} is loaded. Loaded models: {known}.")
        return entry

    def default_for(self, entry: ModelEntry) -> list[str]:
        """The properties this model is the default for."""
        return [prop for prop, e in self.defaults.items() if e is entry]

    def select(self, refs: Sequence[str] | None = None, *, ensemble: bool = False) -> Selection:
        """The models to run: those named (in that order), else the default of each property.

        ``default`` among the names stands for the default models, ``name@latest`` for ``name``.
        With ``ensemble``, each model's uncertainty partner runs too (see :attr:`Selection.companions`).

        Raises:
            ModelNotFound: a name that is not loaded.
        """
        entries, primary, alternatives = select_models(refs, self.defaults, self.get)
        companions = self._companions(entries) if ensemble else ()
        return Selection(entries=entries, primary=primary, alternatives=alternatives, companions=companions)

    def _companions(self, entries: Sequence[ModelEntry]) -> tuple[ModelEntry, ...]:
        """The ensemble partners the entries' uncertainties name that are loaded (same weights) and not run yet."""
        out: dict[ModelEntry, None] = {}
        for entry in entries:
            if entry.uncertainty is None:
                continue
            for ref, sha in entry.uncertainty.partners.values():
                partner = self._find(ref)
                if partner is not None and partner.weights_sha256 == sha and partner not in entries:
                    out[partner] = None
        return tuple(out)

    def without(self, refused: Mapping[ModelEntry, str]) -> Registry:
        """A registry without the given models, each listed as refused with its reason."""
        kept = [e for e in self.entries if e not in refused]
        extra = [RefusedModel(path=str(e.folder), reason=reason) for e, reason in refused.items()]
        return Registry(kept, [*self.refused, *extra], self._overrides)
