"""CGCNN: stacked gated graph convolutions.

Xie & Grossman, "Crystal Graph Convolutional Neural Networks for an Accurate and Interpretable
Prediction of Material Properties", PRL 120, 145301 (2018).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._base import CrystalGraphNet
from ._layers import CGConv
from .config import CGCNNConfig

__all__ = ["CGCNN"]


class _Stack(nn.ModuleList):
    def forward(self, x: Tensor, edge_attr: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        for conv in self:
            x = conv(x, edge_attr, src, dst)
        return x


class CGCNN(CrystalGraphNet):
    """CGCNN with ``n_conv`` stacked convolutions, each with its own weights.

    Defaults (64 atom features, 3 convolutions, 128 hidden, 1 hidden layer) follow the paper;
    the three convolutions hold 66,432 parameters.
    """

    def __init__(self, config: CGCNNConfig) -> None:
        super().__init__(config)
        k = config.graph.num_gaussians
        self.convs = _Stack(CGConv(config.atom_fea_len, k) for _ in range(config.n_conv))
