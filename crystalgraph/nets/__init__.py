"""Crystal graph networks: CGCNN and SR-CGCNN, single- or multi-task."""

from __future__ import annotations

from ._base import CrystalGraphNet
from ._layers import CGConv, GaussianExpansion, SharedCGConv
from .cgcnn import CGCNN
from .config import (
    KNOWN_TARGETS,
    CGCNNConfig,
    ModelConfig,
    SRCGCNNConfig,
    TargetSpec,
    parse_model_config,
)
from .sr_cgcnn import SRCGCNN

__all__ = [
    "CGCNN",
    "SRCGCNN",
    "CGConv",
    "SharedCGConv",
    "GaussianExpansion",
    "CrystalGraphNet",
    "CGCNNConfig",
    "SRCGCNNConfig",
    "ModelConfig",
    "TargetSpec",
    "KNOWN_TARGETS",
    "parse_model_config",
    "build_model",
]


def build_model(config: CGCNNConfig | SRCGCNNConfig) -> CrystalGraphNet:
    """The one factory: a fresh model for a config."""
    if isinstance(config, CGCNNConfig):
        return CGCNN(config)
    if isinstance(config, SRCGCNNConfig):
        return SRCGCNN(config)
    raise TypeError(f"not a model config: {type(config).__name__}")
