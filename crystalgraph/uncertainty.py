"""Calibrated uncertainty from a model's embedding space.

A model's pooled crystal embedding (:meth:`CrystalGraphNet.pool`) is standardised with the
training set's mean and std per dimension. Two scores are read from it:

- **distance**: the mean distance to the ``k`` nearest of ``K`` k-means centroids of the training
  embeddings; a score beyond the validation split's 99th percentile marks a crystal as out of the
  training domain;
- **neighbour error** (per property): the mean ``|error|`` of the model on the ``k_reference``
  validation crystals nearest in embedding space, i.e. how wrong the model was on crystals it
  sees as similar (on the validation split itself, each crystal's own error is left out); for a
  band gap, among the validation crystals of the same class only (the prediction exactly 0 eV or
  not), where that ranks the validation errors better.

For each property, the score chosen on validation feeds a monotone piecewise-linear map, fitted on
the validation split, that gives ``sigma``: one standard deviation in the property's unit.

The shipped artifact (``uncertainty.npz`` in the model folder, read with ``allow_pickle=False``)
holds the centroids and the validation reference embeddings in float16, the validation errors,
the standardisation and the maps: a few hundred KiB to about 1 MiB, never the training set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .features import MAX_Z

__all__ = [
    "BY_CLASS",
    "EmbeddingUncertainty",
    "kmeans",
    "centroid_score",
    "neighbour_error",
    "combined_score",
    "distance_and_neighbour_error",
    "monotone_fit",
    "density_g_cm3",
]

#: g/mol per Å^3 -> g/cm^3 (1 / (N_A * 1e-24)).
_AMU_PER_A3 = 1.66053907


@lru_cache(maxsize=1)
def _masses() -> np.ndarray:
    from pymatgen.core import Element

    out = np.zeros(MAX_Z + 1)
    for z in range(1, MAX_Z + 1):
        out[z] = float(Element.from_Z(z).atomic_mass)
    return out


def density_g_cm3(z: np.ndarray, volume: float) -> float:
    """Mass density (g/cm^3) of a cell holding atoms ``z`` (atomic numbers) in ``volume`` Å^3."""
    return float(_masses()[np.asarray(z, int)].sum() * _AMU_PER_A3 / volume)


def kmeans(x: np.ndarray, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Lloyd's k-means (k-means++ start); returns ``[k, D]`` centroids.

    Shapes:
        ``x: [n, D]`` -> ``[k, D]``.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    k = min(k, len(x))
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        centers.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    c = np.stack(centers)
    xx = (x**2).sum(1, keepdims=True)
    for _ in range(iters):
        label = np.argmin(xx - 2 * x @ c.T + (c**2).sum(1), axis=1)
        counts = np.bincount(label, minlength=k)
        sums = np.zeros_like(c)
        np.add.at(sums, label, x)
        nonempty = counts > 0
        c[nonempty] = sums[nonempty] / counts[nonempty, None]
    return c


def _sq_distances(z: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances ``[n, R]`` between rows of ``z`` and of ``ref`` (``ref_sq``: its squared norms)."""
    if ref_sq is None:
        ref_sq = (ref**2).sum(1)
    out: np.ndarray = (z**2).sum(1, keepdims=True) - 2 * z @ ref.T + ref_sq
    return out


#: Query rows per distance block (512 x 3,450 validation crystals in float32: 7 MiB).
_ROWS = 512


def centroid_score(z: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance of each row of ``z`` to its ``k`` nearest centroids.

    Shapes:
        ``z: [n, D]``, ``centroids: [K, D]`` -> ``[n]``.
    """
    c = np.asarray(centroids, np.float32)
    z = np.asarray(z, np.float32)
    c_sq = (c**2).sum(1)
    k = min(k, c.shape[0])
    out = np.empty(len(z), np.float32)
    for s in range(0, len(z), _ROWS):  # bounded memory: at most _ROWS x K distances at a time
        d2 = _sq_distances(z[s : s + _ROWS], c, c_sq)
        near = d2.min(1, keepdims=True) if k == 1 else np.partition(d2, k - 1, axis=1)[:, :k]
        out[s : s + len(d2)] = np.sqrt(np.maximum(near, 0.0)).mean(1)
    return out


#: How the neighbour error averages its neighbours' errors: equally, or weighted by ``1 / (d² + ε)``
#: (the nearest count most; on validation it ranks every shipped model's errors better).
NEIGHBOUR_WEIGHTINGS = ("uniform", "inverse_square_distance")
_EPS_SQ = 1e-6


def _check_weighting(weighting: str) -> None:
    if weighting not in NEIGHBOUR_WEIGHTINGS:
        raise ValueError(f"unknown neighbour weighting {weighting!r} (known: {', '.join(NEIGHBOUR_WEIGHTINGS)})")


def _nearest_mean(
    d2: np.ndarray, errors: np.ndarray, excluded: np.ndarray, k: int, weighting: str = "uniform"
) -> np.ndarray:
    """Mean of ``errors`` over each row's ``k`` smallest ``d2``; columns in ``excluded`` are never chosen.

    ``weighting`` (:data:`NEIGHBOUR_WEIGHTINGS`): an equal mean, or weights ``1 / (d2 + 1e-6)``.

    Shapes:
        ``d2: [n, R]``, ``errors, excluded: [R]`` -> ``[n]``.
    """
    if excluded.any():
        d2 = np.where(excluded, np.inf, d2)
    near = np.argpartition(d2, k - 1, axis=1)[:, :k]
    if weighting == "uniform":
        out: np.ndarray = errors[near].mean(1)
        return out
    w = 1.0 / (np.maximum(np.take_along_axis(d2, near, 1), 0.0) + _EPS_SQ)
    out = (errors[near] * w).sum(1) / w.sum(1)
    return out


def neighbour_error(
    z: np.ndarray,
    reference: np.ndarray,
    errors: np.ndarray,
    k: int,
    leave_one_out: bool = False,
    weighting: str = "uniform",
    classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Mean of ``errors`` over each row's ``k`` nearest reference rows (Euclidean).

    Args:
        z: ``[n, D]`` standardised embeddings.
        reference: ``[R, D]`` standardised reference embeddings.
        errors: ``[R]`` their ``|error|`` (NaN where the property has no label: those rows are skipped).
        k: Neighbours averaged.
        leave_one_out: ``z`` is ``reference`` itself: each row's own error is left out.
        weighting: ``uniform`` (an equal mean) or ``inverse_square_distance`` (weights
            ``1 / (d² + 1e-6)``; a query identical to a reference crystal gets that crystal's error).
        classes: ``(query_class [n], reference_class [R])`` booleans: each query's neighbours are
            taken among the reference rows of its own class only (for a band gap, whether the
            prediction is exactly 0 eV: a crystal predicted metallic is judged by how wrong the
            model was on the crystals it also predicted metallic).

    Shapes:
        ``[n, D]`` -> ``[n]``.
    """
    _check_weighting(weighting)
    ref = np.asarray(reference, np.float32)
    z = np.asarray(z, np.float32)
    unlabelled = ~np.isfinite(errors)
    err = np.nan_to_num(np.asarray(errors, np.float32))
    ref_sq = (ref**2).sum(1)
    out = np.empty(len(z), np.float32)
    for s in range(0, len(z), _ROWS):
        d2 = _sq_distances(z[s : s + _ROWS], ref, ref_sq)
        if leave_one_out:
            rows = np.arange(len(d2))
            d2[rows, s + rows] = np.inf
        part = None if classes is None else (classes[0][s : s + _ROWS], classes[1])
        out[s : s + len(d2)] = _class_nearest_mean(d2, err, unlabelled, k, weighting, part, int(leave_one_out))
    return out


def _class_nearest_mean(
    d2: np.ndarray,
    errors: np.ndarray,
    unlabelled: np.ndarray,
    k: int,
    weighting: str,
    classes: tuple[np.ndarray, np.ndarray] | None,
    left_out: int = 0,
) -> np.ndarray:
    """:func:`_nearest_mean` over all reference rows, or per class (each query among its own class's rows).

    ``left_out``: 1 where each query's own reference row is already at an infinite distance (leave
    one out); ``k`` shrinks to the neighbours a class has. A class without reference crystals reads
    every class's.

    Shapes:
        ``d2: [n, R]``, ``errors, unlabelled: [R]`` -> ``[n]``.
    """
    labelled = ~unlabelled
    if classes is None:
        return _nearest_mean(d2, errors, unlabelled, min(k, int(labelled.sum()) - left_out), weighting)
    query, ref = np.asarray(classes[0], bool), np.asarray(classes[1], bool)
    out = np.empty(len(d2), np.float32)
    for c in (False, True):
        rows = query == c
        if not rows.any():
            continue
        eligible = labelled & (ref == c)
        if int(eligible.sum()) <= left_out:
            eligible = labelled
        out[rows] = _nearest_mean(d2[rows], errors, ~eligible, min(k, int(eligible.sum()) - left_out), weighting)
    return out


def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``y`` (weights ``w``)."""
    blocks: list[tuple[float, float, int]] = []  # (value, weight, count)
    for v, wt in zip(y, w, strict=True):
        blocks.append((float(v), float(wt), 1))
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append(((v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2))
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def monotone_fit(
    score: np.ndarray, abs_err: np.ndarray, n_bins: int = 12, levels: tuple[float, float] = (0.6827, 0.90)
) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a non-decreasing map score -> sigma, fitted on validation errors.

    The validation crystals are cut into ``n_bins`` bins of equal count by score. In each bin
    sigma is the larger of the 68.27% quantile of ``|error|`` and half its 90% quantile (``levels``), so
    that about 68% of the bin's errors lie within 1 sigma and at least 90% within 2 sigma even
    where the errors have heavier tails than a Gaussian; the bin values are then made
    non-decreasing (isotonic regression) and placed at each bin's median score. A bin whose errors
    are so often exactly zero that its quantile is 0 (metals whose band gap is gated to 0 eV) gets a
    tenth of the mean ``|error|`` instead, so that it does not make a prediction certain; a bin of
    small errors that are not zero (a model without a gate predicting a few meV for metals) keeps
    its measured quantile: a floor there would cover every one of them at 1 sigma.

    Returns:
        ``(score_knots, sigma_knots)``, each ``[n_bins]``.
    """
    order = np.argsort(score)
    bins = np.array_split(order, n_bins)
    xs = np.array([np.median(score[b]) for b in bins])
    one, two = levels
    q = np.array([max(np.quantile(abs_err[b], one), np.quantile(abs_err[b], two) / 2) for b in bins])
    q = np.where(q > 0, q, 0.1 * float(np.mean(abs_err)))
    ys = _isotonic(q, np.array([len(b) for b in bins], float))
    return xs, np.maximum(ys, 1e-6)


def combined_score(score: np.ndarray, spread: np.ndarray, spread_scale: float, distance_scale: float) -> np.ndarray:
    """Ensemble spread and embedding distance, each in units of its validation median, combined.

    Returns ``hypot(spread / spread_scale, score / distance_scale)``.
    """
    return np.hypot(np.asarray(spread) / spread_scale, np.asarray(score) / distance_scale)


def distance_and_neighbour_error(
    distance: np.ndarray, neighbour: np.ndarray, distance_scale: float, neighbour_scale: float
) -> np.ndarray:
    """The embedding distance and the neighbour error, each in units of its validation median, combined.

    A crystal far from the training set and one among badly predicted validation crystals are
    both doubtful; on the validation split the combination ranks the formation-energy errors
    better than either alone (``python -m training.uncertainty`` measures it per property).

    Returns ``hypot(distance / distance_scale, neighbour / neighbour_scale)``.
    """
    return np.hypot(np.asarray(distance) / distance_scale, np.asarray(neighbour) / neighbour_scale)


#: The scores a property's sigma map may read (``EmbeddingUncertainty.score_of``).
SCORE_KINDS = ("distance", "neighbour_error", "distance+neighbour_error", "neighbour_error_by_class")
#: The score kinds whose neighbours are taken among the validation crystals of the query's own class
#: (its prediction of the property exactly 0 or not; ``EmbeddingUncertainty.reference_zero``).
BY_CLASS = ("neighbour_error_by_class",)


@dataclass(frozen=True)
class EmbeddingUncertainty:
    """The shipped uncertainty of one model: embedding standardisation, centroids and maps.

    Attributes:
        mean: ``[D]`` training embeddings' mean; ``std``: ``[D]`` their std.
        centroids: ``[K, D]`` k-means centroids of the standardised training embeddings.
        k: Centroids averaged in the score.
        knots: Property -> ``(score_knots, sigma_knots)`` of its monotone map.
        ood_threshold: Score above which a crystal is out of the training domain.
        ensemble: Property -> ``(score_knots, sigma_knots, spread_scale, distance_scale)``: the
            map used when a second model's prediction of the property is at hand (a 2-member
            ensemble); its score is ``hypot(|a - b| / spread_scale, s / distance_scale)``, ``s``
            the property's own score.
        reference: ``[R, D]`` standardised validation embeddings (``None``: no neighbour error).
        reference_errors: Property -> ``[R]`` the model's ``|error|`` on them (NaN: no label).
        k_reference: Validation neighbours averaged in the neighbour error.
        score_of: Property -> the score its maps read: ``"distance"`` (where absent),
            ``"neighbour_error"``, ``"distance+neighbour_error"``, both combined as
            ``hypot(d / u, e / v)`` with ``(u, v) = score_scales[property]``, or
            ``"neighbour_error_by_class"``: the neighbour error among the validation crystals of
            the query's class (its prediction of the property exactly 0 or not).
        reference_zero: Property -> ``[R]`` whether the model's prediction of it on each validation
            crystal was exactly 0 (the classes of ``neighbour_error_by_class``).
        score_scales: Property -> ``(u, v)``, the validation medians of the distance and of the
            neighbour error, for the properties whose score combines them.
        neighbour_weighting: How the neighbour error averages (:data:`NEIGHBOUR_WEIGHTINGS`;
            ``uniform`` in artifacts written before the choice existed).
    """

    mean: np.ndarray
    std: np.ndarray
    centroids: np.ndarray
    k: int
    knots: dict[str, tuple[np.ndarray, np.ndarray]]
    ood_threshold: float
    ensemble: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=dict)
    reference: np.ndarray | None = None
    reference_errors: dict[str, np.ndarray] = field(default_factory=dict)
    k_reference: int = 30
    score_of: dict[str, str] = field(default_factory=dict)
    score_scales: dict[str, tuple[float, float]] = field(default_factory=dict)
    neighbour_weighting: str = "uniform"
    reference_zero: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_weighting(self.neighbour_weighting)
        for prop, kind in self.score_of.items():
            if kind not in SCORE_KINDS:
                raise ValueError(f"{prop}: unknown score {kind!r} (known: {', '.join(SCORE_KINDS)})")
            if kind == "distance+neighbour_error" and prop not in self.score_scales:
                raise ValueError(f"{prop}: a combined score without its scales")
            if kind in BY_CLASS and prop not in self.reference_zero:
                raise ValueError(f"{prop}: a score by class without the reference crystals' classes")
        # What every query reads, computed once: float32 reference rows and their squared norms, each
        # property's errors with its unlabelled rows (never neighbours) marked.
        if self.reference is not None:
            ref = np.asarray(self.reference, np.float32)
            object.__setattr__(self, "_ref", ref)
            object.__setattr__(self, "_ref_sq", (ref**2).sum(1))
            object.__setattr__(
                self,
                "_ref_errors",
                {
                    p: (np.nan_to_num(np.asarray(e, np.float32)), ~np.isfinite(e))
                    for p, e in self.reference_errors.items()
                },
            )

    def _neighbour_errors(
        self, z: np.ndarray, props: list[str], zero: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """:func:`neighbour_error` of ``z`` for each of ``props``, with one distance matrix for all.

        ``zero``: property -> ``[n]`` whether each query's prediction is exactly 0 (its class), for the
        properties whose score is by class.
        """
        d2 = _sq_distances(z, self._ref, self._ref_sq)  # type: ignore[attr-defined]
        out = {}
        for prop in props:
            err, unlabelled = self._ref_errors[prop]  # type: ignore[attr-defined]
            classes = (zero[prop], self.reference_zero[prop]) if self.score_of.get(prop) in BY_CLASS else None
            out[prop] = _class_nearest_mean(d2, err, unlabelled, self.k_reference, self.neighbour_weighting, classes)
        return out

    def standardise(self, embedding: np.ndarray) -> np.ndarray:
        """``[n, D]`` embeddings in the units the scores use."""
        out: np.ndarray = (np.asarray(embedding, np.float32) - self.mean) / self.std
        return out

    def score(self, embedding: np.ndarray) -> np.ndarray:
        """Distance scores, ``[n, D]`` embeddings -> ``[n]``."""
        return centroid_score(self.standardise(embedding), self.centroids, self.k)

    def property_scores(
        self,
        embedding: np.ndarray,
        distance: np.ndarray | None = None,
        standardised: bool = False,
        values: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Property -> the ``[n]`` scores its sigma map reads (see ``score_of``).

        Args:
            embedding: ``[n, D]`` pooled embeddings.
            distance: Their distance scores, if already made.
            standardised: ``embedding`` is already in the scores' units (:meth:`standardise`).
            values: Property -> ``[n]`` the model's predictions of it: a score by class needs them.

        Raises:
            ValueError: a property's score is by class and its predictions are not given.
        """
        z = embedding if standardised else self.standardise(embedding)
        d = centroid_score(z, self.centroids, self.k) if distance is None else distance
        kinds = {p: self.score_of.get(p, "distance") if self.reference is not None else "distance" for p in self.knots}
        local = [p for p, kind in kinds.items() if kind != "distance"]
        zero = {}
        for p in local:
            if kinds[p] in BY_CLASS:
                if values is None or p not in values:
                    raise ValueError(f"{p}: its sigma reads the class of the prediction; give the predictions")
                zero[p] = np.asarray(values[p]) == 0
        errors = self._neighbour_errors(z, local, zero) if local else {}
        out = {}
        for p, kind in kinds.items():
            if kind == "distance":
                out[p] = d
            elif kind in ("neighbour_error", *BY_CLASS):
                out[p] = errors[p]
            else:
                out[p] = distance_and_neighbour_error(d, errors[p], *self.score_scales[p])
        return out

    @property
    def properties(self) -> list[str]:
        """The properties with a sigma map, in the column order of :meth:`scores`."""
        return sorted(self.knots)

    def scores(self, embedding: np.ndarray, values: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Everything sigma and ``out_of_domain`` read of a batch of crystals, in one pass.

        Column 0 is the distance score, then one column per property (:attr:`properties`) with the
        score its map reads. A batch costs one matrix product against the centroids (and one against
        the validation reference), so the service computes it beside the batched forward pass.
        ``values``: property -> ``[n]`` the model's predictions (see :meth:`property_scores`).

        Shapes:
            ``[n, D]`` embeddings -> ``[n, 1 + P]``.
        """
        z = self.standardise(embedding)
        d = centroid_score(z, self.centroids, self.k)
        per_property = self.property_scores(z, d, standardised=True, values=values)
        return np.column_stack([d, *(per_property[p] for p in self.properties)]).astype(np.float64)

    def sigma(self, prop: str, score: np.ndarray) -> np.ndarray:
        """Calibrated one-sigma uncertainty of ``prop`` at its scores (flat beyond the knots)."""
        xs, ys = self.knots[prop]
        out: np.ndarray = np.interp(score, xs, ys)
        return out

    def sigma_ensemble(self, prop: str, score: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Sigma from the property's score and the ensemble spread ``|a - b|`` (see ``ensemble``)."""
        xs, ys, s_scale, d_scale = self.ensemble[prop]
        out: np.ndarray = np.interp(combined_score(score, spread, s_scale, d_scale), xs, ys)
        return out

    def save(self, path: Path) -> None:
        """Write the ``.npz`` artifact (float16 centroids)."""
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean.astype(np.float32),
            "std": self.std.astype(np.float32),
            "centroids": self.centroids.astype(np.float16),
            "k": np.array(self.k),
            "ood_threshold": np.array(self.ood_threshold),
            "properties": np.array(sorted(self.knots)),
        }
        for prop, (xs, ys) in self.knots.items():
            arrays[f"score_knots/{prop}"] = xs
            arrays[f"sigma_knots/{prop}"] = ys
        arrays["ensemble_properties"] = np.array(sorted(self.ensemble), dtype=str)
        for prop, (xs, ys, s_scale, d_scale) in self.ensemble.items():
            arrays[f"ensemble_score_knots/{prop}"] = xs
            arrays[f"ensemble_sigma_knots/{prop}"] = ys
            arrays[f"ensemble_scales/{prop}"] = np.array([s_scale, d_scale])
        if self.reference is not None:
            arrays["reference"] = self.reference.astype(np.float16)
            arrays["k_reference"] = np.array(self.k_reference)
            arrays["neighbour_weighting"] = np.array(self.neighbour_weighting)
            for prop, errors in self.reference_errors.items():
                arrays[f"reference_errors/{prop}"] = errors.astype(np.float32)
            for prop, zero in self.reference_zero.items():
                arrays[f"reference_zero/{prop}"] = np.asarray(zero, bool)
        arrays["score_of"] = np.array([self.score_of.get(p, "distance") for p in sorted(self.knots)], dtype=str)
        for prop, scales in self.score_scales.items():
            arrays[f"score_scales/{prop}"] = np.array(scales, dtype=np.float64)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> EmbeddingUncertainty:
        """Read an artifact written by :meth:`save` (no pickles).

        Raises:
            ValueError: not such an artifact.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                props = [str(p) for p in z["properties"]]
                ens = [str(p) for p in z["ensemble_properties"]] if "ensemble_properties" in z else []
                ensemble = {
                    p: (
                        z[f"ensemble_score_knots/{p}"],
                        z[f"ensemble_sigma_knots/{p}"],
                        float(z[f"ensemble_scales/{p}"][0]),
                        float(z[f"ensemble_scales/{p}"][1]),
                    )
                    for p in ens
                }
                kinds = [str(k) for k in z["score_of"]] if "score_of" in z else ["distance"] * len(props)
                reference = z["reference"].astype(np.float32) if "reference" in z else None
                return cls(
                    reference=reference,
                    reference_errors={p: z[f"reference_errors/{p}"] for p in props if f"reference_errors/{p}" in z},
                    reference_zero={p: z[f"reference_zero/{p}"] for p in props if f"reference_zero/{p}" in z},
                    k_reference=int(z["k_reference"]) if "k_reference" in z else 30,
                    neighbour_weighting=str(z["neighbour_weighting"]) if "neighbour_weighting" in z else "uniform",
                    score_of=dict(zip(sorted(props), kinds, strict=True)),
                    score_scales={
                        p: (float(z[f"score_scales/{p}"][0]), float(z[f"score_scales/{p}"][1]))
                        for p in props
                        if f"score_scales/{p}" in z
                    },
                    ensemble=ensemble,
                    mean=z["mean"].astype(np.float32),
                    std=z["std"].astype(np.float32),
                    centroids=z["centroids"].astype(np.float32),
                    k=int(z["k"]),
                    knots={p: (z[f"score_knots/{p}"], z[f"sigma_knots/{p}"]) for p in props},
                    ood_threshold=float(z["ood_threshold"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not an uncertainty artifact: {exc}") from exc
