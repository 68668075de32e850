"""Calibrated uncertainty from distances in a model's embedding space.

A model's pooled crystal embedding (:meth:`CrystalGraphNet.pool`) is standardised with the
training set's mean and std per dimension and compared with ``K`` k-means centroids of the
training embeddings. The score of a crystal is its mean distance to the ``k`` nearest centroids;
a monotone piecewise-linear map, fitted on the validation split, turns the score into ``sigma``,
one standard deviation in the property's unit, for each property. A score beyond the
validation split's 99th percentile marks a crystal as out of the training domain.

The shipped artifact (``uncertainty.npz`` in the model folder, read with ``allow_pickle=False``)
holds the centroids in float16, the standardisation and the maps: a few hundred KiB, not the
training set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .features import MAX_Z

__all__ = ["EmbeddingUncertainty", "kmeans", "centroid_score", "combined_score", "monotone_fit", "density_g_cm3"]

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


def centroid_score(z: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance of each row of ``z`` to its ``k`` nearest centroids.

    Shapes:
        ``z: [n, D]``, ``centroids: [K, D]`` -> ``[n]``.
    """
    z = np.asarray(z, np.float32)
    c = np.asarray(centroids, np.float32)
    d2 = (z**2).sum(1, keepdims=True) - 2 * z @ c.T + (c**2).sum(1)
    k = min(k, c.shape[0])
    near = np.partition(np.maximum(d2, 0.0), k - 1, axis=1)[:, :k]
    out: np.ndarray = np.sqrt(near).mean(1)
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


def monotone_fit(score: np.ndarray, abs_err: np.ndarray, n_bins: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a non-decreasing map score -> sigma, fitted on validation errors.

    The validation crystals are cut into ``n_bins`` bins of equal count by score. In each bin
    sigma is the larger of the 68.27% quantile of ``|error|`` and half its 90% quantile, so
    that about 68% of the bin's errors lie within 1 sigma and at least 90% within 2 sigma even
    where the errors have heavier tails than a Gaussian; the bin values are then made
    non-decreasing (isotonic regression) and placed at each bin's median score.

    Returns:
        ``(score_knots, sigma_knots)``, each ``[n_bins]``.
    """
    order = np.argsort(score)
    bins = np.array_split(order, n_bins)
    xs = np.array([np.median(score[b]) for b in bins])
    q = np.array([max(np.quantile(abs_err[b], 0.6827), np.quantile(abs_err[b], 0.90) / 2) for b in bins])
    ys = _isotonic(q, np.array([len(b) for b in bins], float))
    return xs, np.maximum(ys, 1e-6)


def combined_score(score: np.ndarray, spread: np.ndarray, spread_scale: float, distance_scale: float) -> np.ndarray:
    """Ensemble spread and embedding distance, each in units of its validation median, combined.

    Returns ``hypot(spread / spread_scale, score / distance_scale)``.
    """
    return np.hypot(np.asarray(spread) / spread_scale, np.asarray(score) / distance_scale)


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
            ensemble); its score is ``hypot(|a - b| / spread_scale, d / distance_scale)``.
    """

    mean: np.ndarray
    std: np.ndarray
    centroids: np.ndarray
    k: int
    knots: dict[str, tuple[np.ndarray, np.ndarray]]
    ood_threshold: float
    ensemble: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=dict)

    def score(self, embedding: np.ndarray) -> np.ndarray:
        """Distance scores, ``[n, D]`` embeddings -> ``[n]``."""
        z = (np.asarray(embedding, np.float32) - self.mean) / self.std
        return centroid_score(z, self.centroids, self.k)

    def sigma(self, prop: str, score: np.ndarray) -> np.ndarray:
        """Calibrated one-sigma uncertainty of ``prop`` at these scores (flat beyond the knots)."""
        xs, ys = self.knots[prop]
        out: np.ndarray = np.interp(score, xs, ys)
        return out

    def sigma_ensemble(self, prop: str, score: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """Sigma from the distance score and the ensemble spread ``|a - b|`` (see ``ensemble``)."""
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
                return cls(
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
