"""Crystal graph networks: CGCNN and SR-CGCNN, single- or multi-task, and their registry."""

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
)
from .registry import (
    ARCHITECTURES,
    Architecture,
    architecture,
    architecture_names,
    build_model,
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
    "Architecture",
    "ARCHITECTURES",
    "architecture",
    "architecture_names",
    "parse_model_config",
    "build_model",
]
