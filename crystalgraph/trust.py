"""Trust signals per prediction: calibrated ``sigma`` and applicability-domain warnings.

A model folder calibrated by ``python -m training.uncertainty`` lists two files in its manifest:
``uncertainty.npz`` (embedding standardisation, k-means centroids of the training crystals'
embeddings, the monotone score -> sigma map per property, the ``out_of_domain`` threshold; see
:class:`EmbeddingUncertainty`) and ``uncertainty.json`` (how sigma is made and calibrated, and the
training set's domain: element counts, atoms per cell, density range). Both are checked against
their sha256 before use. A model without them answers with ``sigma = None`` and only the element
check. Used by the service and by the offline :class:`crystalgraph.Predictor` alike.

Warnings never block an answer: they say how far the structure is from what the model learned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .checkpoint import CheckpointError, verify_file
from .nets import TargetSpec
from .notices import Notice
from .uncertainty import EmbeddingUncertainty, density_g_cm3

__all__ = ["ModelUncertainty", "load_uncertainty", "ensemble_pairs", "trust_signals", "DOMAIN_CODES"]


class _Summary(Protocol):
    """What the domain checks read of a structure's summary."""

    @property
    def elements(self) -> list[str]:
        """Its elements."""
        ...

    @property
    def n_sites(self) -> int:
        """Atoms in the cell."""
        ...

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        ...


class _TrustModel(Protocol):
    """What :func:`trust_signals` reads of a model (the service's registry entry, the Predictor's model)."""

    @property
    def ref(self) -> str:
        """``name@version``."""
        ...

    @property
    def targets(self) -> Sequence[TargetSpec]:
        """Its outputs, in order."""
        ...

    @property
    def uncertainty(self) -> ModelUncertainty | None:
        """Its calibrated uncertainty, if shipped."""
        ...


#: Applicability-domain warning codes, with what each means.
DOMAIN_CODES: dict[str, str] = {
    "element_not_in_training_set": "an element the model never saw in training",
    "element_rare_in_training_set": "an element present in only a few training crystals",
    "too_many_atoms": "more atoms in the cell than any training crystal had",
    "density_out_of_range": "a density outside the training crystals' range",
    "out_of_domain": "a crystal embedding farther from the training crystals than the validation threshold",
}


@dataclass(frozen=True)
class ModelUncertainty:
    """A model's calibrated uncertainty and its training set's domain.

    Attributes:
        estimator: Embedding distance -> sigma per property.
        info: The parsed ``uncertainty.json``.
    """

    estimator: EmbeddingUncertainty
    info: dict[str, Any]

    @property
    def method(self) -> str:
        """``embedding_distance``."""
        return str(self.info.get("method", "embedding_distance"))

    @property
    def how(self) -> str:
        """One paragraph: how sigma is made and calibrated."""
        return str(self.info.get("how", ""))

    @property
    def domain(self) -> dict[str, Any]:
        """Element counts, ``max_atoms``, ``density_g_cm3`` range, ``rare_below``."""
        d = self.info.get("domain")
        return d if isinstance(d, dict) else {}

    @property
    def partners(self) -> dict[str, tuple[str, str]]:
        """Property -> ``(name@version, weights sha256)`` of its ensemble partner."""
        raw = self.info.get("partners")
        if not isinstance(raw, dict):
            return {}
        return {
            str(p): (str(v["model"]), str(v["weights_sha256"]))
            for p, v in raw.items()
            if isinstance(v, dict) and "model" in v and "weights_sha256" in v and p in self.estimator.ensemble
        }

    def scores(self, embeddings: np.ndarray, values: np.ndarray, targets: Sequence[TargetSpec]) -> np.ndarray:
        """A batch's pooled embeddings ``[n, D]`` and outputs ``[n, T]`` -> ``[n, 1 + P]`` scores.

        :meth:`EmbeddingUncertainty.scores`, made once per batch beside the forward pass (a band gap's
        score may read whether its prediction is exactly 0); :meth:`sigmas` reads one row.
        """
        out = np.asarray(values)
        return self.estimator.scores(embeddings, {t.name: out[:, i] for i, t in enumerate(targets)})

    def sigmas(self, scores: np.ndarray, pairs: dict[str, tuple[float, float]]) -> tuple[float, dict[str, float]]:
        """The distance score and each property's sigma for one crystal's row of :meth:`scores`.

        Each property's sigma reads the score chosen for it on validation (``score_of``: the
        distance, the mean error on the nearest validation crystals, or both combined).

        Args:
            scores: ``[1 + P]``: the distance, then each property's score.
            pairs: Property -> ``(this model's value, its ensemble partner's value)`` where the
                partner ran: those properties get the combined map, the others distance alone.
        """
        row = np.asarray(scores, np.float64)
        of = dict(zip(self.estimator.properties, row[1:], strict=True))
        out = {}
        for p in self.estimator.knots:
            score = np.array([of[p]])
            if p in pairs and p in self.estimator.ensemble:
                spread = np.array([abs(pairs[p][0] - pairs[p][1])])
                out[p] = round(float(self.estimator.sigma_ensemble(p, score, spread)[0]), 6)
            else:
                out[p] = round(float(self.estimator.sigma(p, score)[0]), 6)
        return float(row[0]), out

    def notices(self, ref: str, score: float, structure: _Summary, z: np.ndarray) -> list[Notice]:
        """Domain warnings beyond the element check (:func:`crystalgraph.element_warnings`, for every model)."""
        out: list[Notice] = []
        d = self.domain
        counts = d.get("element_counts", {})
        rare_below = int(d.get("rare_below", 0))
        rare = sorted(e for e in structure.elements if 0 < int(counts.get(e, 0)) < rare_below)
        if rare:
            seen = ", ".join(f"{e} ({counts[e]})" for e in rare)
            out.append(Notice(code="element_rare_in_training_set",
                              detail=f"Model {ref} saw {seen} in fewer than {rare_below} training crystals; "
                              "its prediction is less certain than sigma may say."))  # fmt: skip
        max_atoms = d.get("max_atoms")
        if isinstance(max_atoms, int) and structure.n_sites > max_atoms:
            out.append(Notice(code="too_many_atoms",
                              detail=f"The cell has {structure.n_sites} atoms; model {ref}'s training crystals had at "
                              f"most {max_atoms}."))  # fmt: skip
        rng = d.get("density_g_cm3")
        if isinstance(rng, list) and len(rng) == 2 and structure.volume > 0:
            rho = density_g_cm3(z, structure.volume)
            if not rng[0] <= rho <= rng[1]:
                out.append(Notice(code="density_out_of_range",
                                  detail=f"Density {rho:.3g} g/cm³ is outside the {rng[0]:.3g}-{rng[1]:.3g} g/cm³ of "
                                  f"model {ref}'s training crystals."))  # fmt: skip
        threshold = self.estimator.ood_threshold
        if math.isfinite(score) and score > threshold:
            out.append(Notice(code="out_of_domain",
                              detail=f"The crystal is far from model {ref}'s training crystals (embedding distance "
                              f"{score:.3g} > {threshold:.3g}, a threshold exceeded by 1% of its validation "
                              "crystals); treat the prediction and its sigma with caution."))  # fmt: skip
        return out


def load_uncertainty(folder: Path, manifest: dict[str, Any]) -> ModelUncertainty | None:
    """The folder's uncertainty, or ``None`` when its manifest lists none.

    Raises:
        crystalgraph.CheckpointError: a listed file that is missing, tampered or unreadable.
    """
    files = manifest.get("files", {})
    if "uncertainty" not in files:
        return None
    npz = verify_file(folder, manifest, "uncertainty")
    info_path = verify_file(folder, manifest, "uncertainty_info")
    try:
        estimator = EmbeddingUncertainty.load(npz)
        info = json.loads(info_path.read_text())
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"{folder}: unreadable uncertainty files: {exc}") from exc
    if not isinstance(info, dict):
        raise CheckpointError(f"{info_path}: not a JSON object")
    return ModelUncertainty(estimator=estimator, info=info)


def ensemble_pairs(
    uncertainty: ModelUncertainty,
    targets: Sequence[TargetSpec],
    values: Sequence[float],
    answered: Mapping[str, tuple[Sequence[TargetSpec], Sequence[float]]],
) -> dict[str, tuple[float, float]]:
    """Property -> ``(this model's value, its ensemble partner's value)`` where the partner ran.

    Args:
        uncertainty: The model's uncertainty (it names each property's partner).
        targets: The model's outputs, in order.
        values: Its outputs for one structure.
        answered: ``name@version`` -> ``(targets, values)`` of every model that ran on the structure.
    """
    names = [t.name for t in targets]
    pairs = {}
    for prop, (ref, _) in uncertainty.partners.items():
        partner = answered.get(ref)
        if partner is not None and prop in names:
            partner_names = [t.name for t in partner[0]]
            if prop in partner_names:
                pairs[prop] = (float(values[names.index(prop)]), float(partner[1][partner_names.index(prop)]))
    return pairs


def trust_signals(
    models: Sequence[_TrustModel],
    values: Sequence[Sequence[float]],
    scores: Sequence[np.ndarray | None],
    answered: Mapping[str, tuple[Sequence[TargetSpec], Sequence[float]]],
    structure: _Summary,
    atomic_numbers: Sequence[np.ndarray],
) -> tuple[list[dict[str, float]], list[Notice]]:
    """Each model's sigma per property and the domain warnings, for one structure.

    The one place the service and the offline :class:`crystalgraph.Predictor` make them.

    Args:
        models: The models whose answers are returned, in order.
        values: Their outputs for the structure, in the order of their targets.
        scores: Their rows of :meth:`ModelUncertainty.scores` ``[1 + P]`` (``None``: no sigma).
        answered: ``name@version`` -> ``(targets, values)`` of every model that ran (ensemble
            partners included: where a property's partner ran, its sigma reads the spread too).
        structure: The structure's summary (elements, atoms, volume).
        atomic_numbers: Per model, the atomic numbers of the sites in the graph it read.

    Returns:
        ``(sigmas, warnings)``: a ``{property: sigma}`` per model (empty without uncertainty), and
        the domain warnings beyond the element check, model by model.
    """
    sigmas: list[dict[str, float]] = []
    warnings: list[Notice] = []
    for model, row, scored, z in zip(models, values, scores, atomic_numbers, strict=True):
        sigma: dict[str, float] = {}
        if model.uncertainty is not None and scored is not None:
            pairs = ensemble_pairs(model.uncertainty, model.targets, row, answered)
            score, sigma = model.uncertainty.sigmas(scored, pairs)
            warnings += model.uncertainty.notices(model.ref, score, structure, z)
        sigmas.append(sigma)
    return sigmas, warnings
