"""Frozen, strict model configurations; ``build_model`` (:mod:`.registry`) is the only factory."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..features import FEATURE_BLOCKS
from ..graph_config import GraphConfig

__all__ = [
    "TargetSpec",
    "CGCNNConfig",
    "SRCGCNNConfig",
    "ModelConfig",
    "KNOWN_TARGETS",
]


class TargetSpec(BaseModel):
    """One predicted property.

    A target is either a regression (a value in ``unit``) or the probability that a crystal is
    a metal (``kind="metal_probability"``): a classification head trained on ``source == 0``
    (band gap zero), whose output is a probability and which gates the ``source`` regression
    (predicted 0 when the probability exceeds the model's tuned threshold).

    Attributes:
        name: Column name in the labels file and key in API answers.
        unit: Physical unit of the predictions (``"1"`` for a probability).
        nonnegative: Predictions are clipped at 0 (band gaps).
        kind: ``"regression"`` or ``"metal_probability"``.
        source: For a probability, the regression target whose zero labels mean "metal".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    unit: str
    nonnegative: bool = False
    kind: Literal["regression", "metal_probability"] = "regression"
    source: str | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> TargetSpec:
        if (self.kind == "metal_probability") != (self.source is not None):
            raise ValueError("a metal_probability target names its source target, and only it does")
        return self

    @property
    def is_probability(self) -> bool:
        """Whether it is a metal probability rather than a regression."""
        return self.kind == "metal_probability"


#: Properties we know the unit and sign of; other label columns need ``--unit``.
KNOWN_TARGETS: dict[str, TargetSpec] = {
    "formation_energy_per_atom": TargetSpec(name="formation_energy_per_atom", unit="eV/atom"),
    "band_gap": TargetSpec(name="band_gap", unit="eV", nonnegative=True),
    "efermi": TargetSpec(name="efermi", unit="eV"),
    "total_magnetization": TargetSpec(name="total_magnetization", unit="μB/cell", nonnegative=True),
    "p_metal": TargetSpec(name="p_metal", unit="1", kind="metal_probability", source="band_gap"),
}


class _NetConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Each architecture narrows it to a Literal of its registry name; the base's "" names none.
    model_type: str = ""

    targets: tuple[TargetSpec, ...] = Field(min_length=1)
    graph: GraphConfig = GraphConfig()

    @model_validator(mode="after")
    def _check_targets(self) -> _NetConfig:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate target names: {names}")
        for t in self.targets:
            if t.is_probability and t.source not in names:
                raise ValueError(f"target {t.name!r} gates {t.source!r}, which the model does not predict")
        return self

    feature_dim: int = Field(sum(w for _, w in FEATURE_BLOCKS), ge=1)
    atom_fea_len: int = Field(64, ge=1)
    h_fea_len: int = Field(128, ge=1)
    n_h: int = Field(1, ge=1)


class CGCNNConfig(_NetConfig):
    """CGCNN (Xie & Grossman 2018): ``n_conv`` stacked gated convolutions."""

    model_type: Literal["cgcnn"] = "cgcnn"
    n_conv: int = Field(3, ge=1)


class SRCGCNNConfig(_NetConfig):
    """SR-CGCNN: one gated convolution applied ``n_steps`` times, batch norm per step."""

    model_type: Literal["sr-cgcnn"] = "sr-cgcnn"
    n_steps: int = Field(3, ge=1)


#: Any architecture's config: the shared fields plus ``model_type``, the name under which
#: :data:`~crystalgraph.nets.registry.ARCHITECTURES` holds its config and network classes.
ModelConfig = _NetConfig
