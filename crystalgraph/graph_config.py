"""The settings that define a crystal graph; every checkpoint carries one."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .features import FEATURE_SET, feature_hash

__all__ = ["GraphConfig"]


class GraphConfig(BaseModel):
    """How a structure becomes a graph: neighbour search, distance expansion, atom features.

    A model is always served with the ``GraphConfig`` it was trained with; the
    :attr:`fingerprint` keys the on-disk graph cache.

    Attributes:
        cutoff: Neighbour search radius in Å.
        max_neighbors: Keep at most this many nearest neighbours per atom.
        min_distance: Two atoms closer than this (Å) are rejected as overlapping.
        gaussian_start: First Gaussian centre (Å).
        gaussian_stop: Last Gaussian centre (Å), included.
        gaussian_step: Spacing of the Gaussian centres (Å).
        gaussian_width: Width σ of each Gaussian, ``exp(-(d - μ)² / σ²)`` (Å).
        feature_set: Name of the element-feature recipe.
        feature_hash: Hash of the element-feature table the model was trained with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cutoff: float = Field(8.0, gt=0)
    max_neighbors: int = Field(12, ge=1)
    min_distance: float = Field(0.5, ge=0)
    gaussian_start: float = 0.0
    gaussian_stop: float = 8.0
    gaussian_step: float = Field(0.2, gt=0)
    gaussian_width: float = Field(0.2, gt=0)
    feature_set: str = FEATURE_SET
    feature_hash: str = Field(default_factory=feature_hash)

    @model_validator(mode="after")
    def _check_grid(self) -> GraphConfig:
        if self.gaussian_stop < self.gaussian_start:
            raise ValueError("gaussian_stop must be >= gaussian_start")
        return self

    @property
    def num_gaussians(self) -> int:
        """Number of Gaussian centres (41 with the defaults)."""
        return int(round((self.gaussian_stop - self.gaussian_start) / self.gaussian_step)) + 1

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the settings that change the graph itself (not the expansion); computed once."""
        key = {k: getattr(self, k) for k in ("cutoff", "max_neighbors", "min_distance", "feature_hash")}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
