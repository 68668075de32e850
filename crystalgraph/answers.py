"""The answer for one structure: what it is, each property's value from each model, warnings, provenance.

The shape is the prediction service's JSON answer (``POST /v1/predict``; ``/v1/predict/batch``
items for lists), and the rules that fill it live here once, for the service's engine and the
offline :class:`~crystalgraph.Predictor` alike: which model's value is *the* prediction of a
property and which are alternatives, the metal probability beside a gated band gap, values
rounded to 6 decimals, and the warning for elements a model never saw in training.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Protocol

from pymatgen.core import Structure

from .crystal import Crystal
from .graph_config import GraphConfig
from .nets import ModelConfig, TargetSpec
from .notices import Notice

_TOKEN_RE = re.compile(r"^([A-Z][a-z]*)(.*)$")

__all__ = [
    "AnswerModel",
    "ManifestFacts",
    "StructureSummary",
    "Prediction",
    "Provenance",
    "Answer",
    "Failure",
    "summarize_structure",
    "gate_columns",
    "training_elements",
    "model_predictions",
    "element_warnings",
    "model_provenance",
]


class AnswerModel(Protocol):
    """What the answer rules read of a loaded model version."""

    @property
    def name(self) -> str:
        """The model name."""
        ...

    @property
    def version(self) -> str:
        """The version."""
        ...

    @property
    def targets(self) -> tuple[TargetSpec, ...]:
        """Its outputs, in order."""
        ...

    @property
    def gated(self) -> dict[str, int]:
        """Property -> output column of the metal probability that gates it."""
        ...

    @property
    def elements(self) -> frozenset[str] | None:
        """The training set's elements, when recorded."""
        ...


@dataclass(frozen=True)
class StructureSummary:
    """The structure an answer is for, as read (the cell as written)."""

    block: str | None
    formula: str
    reduced_formula: str
    n_sites: int
    volume: float
    elements: list[str]


@dataclass(frozen=True)
class Prediction:
    """One property predicted by one model (``sigma``: one standard deviation, when the model has one)."""

    value: float
    unit: str
    model: str
    version: str
    p_metal: float | None = None
    sigma: float | None = None


@dataclass(frozen=True)
class Provenance:
    """What a number traces back to: the exact weights, the training data and the graph settings."""

    model: str
    version: str
    weights_sha256: str | None
    training_set: str | None
    graph: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """The predictions for one structure, in the service's answer shape.

    ``filename`` (and ``index``, the input's position) are set for the items of a list, as in
    ``/v1/predict/batch``.
    """

    structure: StructureSummary
    predictions: dict[str, Prediction]
    alternatives: dict[str, list[Prediction]] = field(default_factory=dict)
    warnings: list[Notice] = field(default_factory=list)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    filename: str | None = None
    index: int | None = None

    ok = True

    def to_dict(self) -> dict[str, Any]:
        """The service's JSON: a ``/v1/predict`` answer, or a batch item when ``filename`` is set."""
        data = asdict(self)
        filename, index = data.pop("filename"), data.pop("index")
        if filename is None:
            return data
        return {"index": index, "filename": filename, "ok": True, **data}


@dataclass(frozen=True)
class Failure:
    """An input of a list that could not be predicted: why (a stable ``code`` and a sentence)."""

    filename: str
    error: Notice
    index: int | None = None

    ok = False

    def to_dict(self) -> dict[str, Any]:
        """The service's JSON for a failed batch item."""
        return {"index": self.index, "filename": self.filename, "ok": False, "error": asdict(self.error)}


def gate_columns(targets: Sequence[TargetSpec]) -> dict[str, int]:
    """Property -> output column of the metal probability that gates it (``p_metal`` of a band gap)."""
    names = [t.name for t in targets]
    return {t.source: k for k, t in enumerate(targets) if t.source is not None and t.source in names}


def training_elements(metadata: Mapping[str, Any]) -> frozenset[str] | None:
    """The element symbols of a model's training set (``metadata.elements``), when recorded."""
    elements = metadata.get("elements")
    if isinstance(elements, list) and elements and all(isinstance(e, str) for e in elements):
        return frozenset(elements)
    return None


def _formula(structure: Structure | Crystal) -> str:
    """``Na4 Cl4`` -> ``Na4Cl4``; ``Na1 Cl1`` -> ``NaCl``."""
    parts = []
    for token in structure.composition.formula.split():
        match = _TOKEN_RE.match(token)
        symbol, amount = (match.group(1), match.group(2)) if match else (token, "")
        parts.append(symbol if amount == "1" else symbol + amount)
    return "".join(parts)


def summarize_structure(structure: Structure | Crystal, block: str | None) -> StructureSummary:
    """Formula, sites, volume and elements of a structure or the reader's arrays (its ``block`` name as read)."""
    return StructureSummary(
        block=block,
        formula=_formula(structure),
        reduced_formula=structure.composition.reduced_formula,
        n_sites=len(structure),
        volume=round(float(structure.volume), 4),
        elements=sorted({el.symbol for el in structure.composition.elements if hasattr(el, "symbol")}),
    )


def model_predictions(
    models: Sequence[AnswerModel],
    rows: Sequence[Sequence[float]],
    primary: Mapping[str, AnswerModel],
    alternatives: bool,
    sigmas: Sequence[Mapping[str, float]] | None = None,
) -> tuple[dict[str, Prediction], dict[str, list[Prediction]]]:
    """Each property's prediction, and the other models' answers for it.

    Args:
        models: The models that ran, in the order asked for.
        rows: Each model's outputs for the structure, in the order of its targets (finite).
        primary: For each property, the model whose value is the prediction.
        alternatives: Whether the other models' values are kept (models were named).
        sigmas: Each model's calibrated standard deviation per property, where it has one.

    Returns:
        ``{property: prediction}`` in the order of ``primary``, and ``{property: [others]}``.
        A metal probability is not a property: it is ``p_metal`` of the band gap it gates.
    """
    predictions: dict[str, Prediction] = {}
    others: dict[str, list[Prediction]] = {}
    for i, (model, row) in enumerate(zip(models, rows, strict=True)):
        values = [float(v) for v in row]
        sigma = sigmas[i] if sigmas is not None else {}
        gated = model.gated
        for target, value in zip(model.targets, values, strict=True):
            if target.is_probability:
                continue
            pred = Prediction(
                value=round(value, 6),
                unit=target.unit,
                model=model.name,
                version=model.version,
                p_metal=round(values[gated[target.name]], 6) if target.name in gated else None,
                sigma=sigma.get(target.name),
            )
            if primary.get(target.name) is model:
                predictions[target.name] = pred
            elif alternatives:
                others.setdefault(target.name, []).append(pred)
    return {p: predictions[p] for p in primary if p in predictions}, others


def element_warnings(models: Iterable[AnswerModel], elements: Iterable[str]) -> list[Notice]:
    """``element_not_in_training_set`` for each model whose training set lacks an element of the structure."""
    present = set(elements)
    warnings = []
    for model in models:
        known = model.elements
        unseen = sorted(present - known) if known is not None else []
        if unseen:
            warnings.append(
                Notice(
                    code="element_not_in_training_set",
                    detail=f"Model {model.name}@{model.version} saw no {', '.join(unseen)} in training; "
                    "its prediction is an extrapolation.",
                )
            )
    return warnings


def model_provenance(name: str, version: str, manifest: Mapping[str, Any], graph: GraphConfig) -> Provenance:
    """A model's provenance from its manifest: weights sha256, training-set fingerprint, graph settings."""
    files = manifest.get("files")
    weights = files.get("weights") if isinstance(files, dict) else None
    sha = weights.get("sha256") if isinstance(weights, dict) else None
    metadata = manifest.get("metadata")
    dataset = metadata.get("dataset") if isinstance(metadata, dict) else None
    fingerprint = dataset.get("fingerprint") if isinstance(dataset, dict) else None
    return Provenance(
        model=name,
        version=version,
        weights_sha256=sha if isinstance(sha, str) else None,
        training_set=str(fingerprint) if fingerprint else None,
        graph={"fingerprint": graph.fingerprint, **graph.model_dump()},
    )


class ManifestFacts:
    """What a loaded model version says of itself through its manifest and config.

    Mixed into the service's ``ModelEntry`` and the offline ``LoadedVersion``, which both hold
    ``name``, ``version``, ``config`` and ``manifest``.
    """

    name: str
    version: str
    config: ModelConfig
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        """``name@version``, accepted wherever a model name is."""
        return f"{self.name}@{self.version}"

    @property
    def metadata(self) -> dict[str, Any]:
        """The manifest's ``metadata`` (training facts, metrics), ``{}`` when absent."""
        meta = self.manifest.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def targets(self) -> tuple[TargetSpec, ...]:
        """The model's outputs, in order."""
        return self.config.targets

    @property
    def properties(self) -> list[str]:
        """The properties it predicts (a metal probability is part of its band gap's answer, not one)."""
        return [t.name for t in self.config.targets if not t.is_probability]

    @cached_property
    def gated(self) -> dict[str, int]:
        """Property -> output column of the metal probability that comes with it."""
        return gate_columns(self.config.targets)

    @property
    def graph(self) -> GraphConfig:
        """The graph settings the model was trained with (structures are featurized with these)."""
        return self.config.graph

    @property
    def elements(self) -> frozenset[str] | None:
        """Element symbols of the training set, when the metadata records them."""
        return training_elements(self.metadata)
