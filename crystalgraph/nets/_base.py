"""The part of CGCNN and SR-CGCNN that does not depend on how convolutions are stacked."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..features import FEATURE_SET, MAX_Z, element_feature_table
from ._layers import GaussianExpansion, Head, scatter_sum
from .config import ModelConfig

__all__ = ["CrystalGraphNet"]


class CrystalGraphNet(nn.Module):
    """Embedding, convolutions, mean pooling and one head per target.

    The element feature table, the target normaliser and the Gaussian grid are part of the
    model (buffers), so a checkpoint predicts with exactly what it was trained with.

    Subclasses set ``self.convs``: a module mapping ``(x, edge_attr, src, dst) -> x``.
    """

    convs: nn.Module
    #: Mixed precision for training: in training mode the convolutions run under autocast to this
    #: dtype (``torch.bfloat16``: about 2.5x faster epochs on a CPU with AMX or AVX512-BF16); the
    #: parameters, the node state between updates, pooling, heads and evaluation stay float32.
    #: Not saved: a setting of the run (``TrainConfig.bf16``), not of the model.
    train_autocast: torch.dtype | None = None
    # buffers (register_buffer), typed for the checker
    atom_features: Tensor
    target_mean: Tensor
    target_std: Tensor
    nonnegative: Tensor
    probability: Tensor
    metal_threshold: Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        g = config.graph
        if g.feature_set == FEATURE_SET:
            table = torch.from_numpy(element_feature_table().copy())
        else:  # a foreign table (e.g. a legacy atom_init.json): filled by load_state_dict
            table = torch.zeros(MAX_Z + 1, config.feature_dim)
        if table.shape[1] != config.feature_dim:
            raise ValueError(f"feature_dim {config.feature_dim} != feature table width {table.shape[1]}")
        self.register_buffer("atom_features", table)
        self.register_buffer("target_mean", torch.zeros(len(config.targets)))
        self.register_buffer("target_std", torch.ones(len(config.targets)))
        self.register_buffer("nonnegative", torch.tensor([t.nonnegative for t in config.targets]), persistent=False)
        names = [t.name for t in config.targets]
        self.register_buffer("probability", torch.tensor([t.is_probability for t in config.targets]), persistent=False)
        # (regression column, probability column that gates it) pairs
        self._gates = [(names.index(t.source), k) for k, t in enumerate(config.targets) if t.source is not None]
        if self._gates:
            # tuned on validation after training (training.pipeline) and saved with the weights
            self.register_buffer("metal_threshold", torch.tensor(0.5))
        self.embedding = nn.Linear(config.feature_dim, config.atom_fea_len)
        self.expansion = GaussianExpansion(g.gaussian_start, g.gaussian_stop, g.gaussian_step, g.gaussian_width)
        self.heads = nn.ModuleList(Head(config.atom_fea_len, config.h_fea_len, config.n_h) for _ in config.targets)

    @property
    def gates(self) -> list[tuple[int, int]]:
        """``(regression column, probability column)`` pairs: a metal probability gating a band gap."""
        return list(self._gates)

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.config.targets]

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        """Store the training targets' mean and std (one value per target)."""
        self.target_mean.copy_(mean)
        self.target_std.copy_(std.clamp_min(1e-8))

    def forward(self, z: Tensor, edge_index: Tensor, edge_dist: Tensor, batch: Tensor, num_atoms: Tensor) -> Tensor:
        """Normalised predictions (what the loss sees).

        Args:
            z: Atomic numbers.
            edge_index: Row 0 neighbour ``j``, row 1 centre ``i``.
            edge_dist: Edge lengths in Å.
            batch: Crystal index of each atom.
            num_atoms: Number of atoms of each crystal (its length is the number of crystals).

        Shapes:
            ``z: [N]``, ``edge_index: [2, E]``, ``edge_dist: [E]``, ``batch: [N]``,
            ``num_atoms: [B]`` -> ``[B, T]``.
        """
        return self.readout(self.pool(z, edge_index, edge_dist, batch, num_atoms))

    def pool(self, z: Tensor, edge_index: Tensor, edge_dist: Tensor, batch: Tensor, num_atoms: Tensor) -> Tensor:
        """The crystal embedding: atom features after the convolutions, averaged per crystal.

        What the heads read (:meth:`readout`); the uncertainty estimate measures distances in
        this space. Arguments as in :meth:`forward`.

        Shapes:
            ``z: [N]`` ... ``num_atoms: [B]`` -> ``[B, atom_fea_len]``.
        """
        emb = F.linear(self.atom_features, self.embedding.weight, self.embedding.bias)
        x = emb.index_select(0, z)
        if self.training and self.train_autocast is not None:
            with torch.autocast(x.device.type, dtype=self.train_autocast):
                x = self.convs(x, self.expansion(edge_dist), edge_index[0], edge_index[1]).float()
        else:
            x = self.convs(x, self.expansion(edge_dist), edge_index[0], edge_index[1])
        return scatter_sum(x, batch, num_atoms.shape[0]) / num_atoms.unsqueeze(1).to(x.dtype)

    def readout(self, crys: Tensor) -> Tensor:
        """Normalised predictions from crystal embeddings (:meth:`pool`).

        Shapes:
            ``[B, atom_fea_len]`` -> ``[B, T]``.
        """
        return torch.cat([head(crys) for head in self.heads], dim=1)

    def denormalize(self, out: Tensor) -> Tensor:
        """Normalised outputs to physical units.

        Non-negative targets are clipped at 0; a metal-probability output (a logit) becomes a
        probability, and where it exceeds ``metal_threshold`` the band gap it gates is 0.

        Shapes:
            ``[B, T]`` -> ``[B, T]``.
        """
        y = out * self.target_std + self.target_mean
        y = torch.where(self.nonnegative, y.clamp_min(0.0), y)
        if not self._gates:
            return y
        # In float64, then rounded: ATen's float32 sigmoid computes a tensor's last partial vector with scalar
        # code that can differ in the last bit, so p_metal moved by one ulp with the batch (crystalgraph.padding).
        y = torch.where(self.probability, torch.sigmoid(out.double()).to(out.dtype), y)
        cols = list(y.unbind(1))
        for t, k in self._gates:
            cols[t] = torch.where(cols[k] > self.metal_threshold, torch.zeros_like(cols[t]), cols[t])
        return torch.stack(cols, 1)

    def predict(self, z: Tensor, edge_index: Tensor, edge_dist: Tensor, batch: Tensor, num_atoms: Tensor) -> Tensor:
        """Predictions in physical units, ``[B, T]`` (call in eval mode)."""
        return self.denormalize(self(z, edge_index, edge_dist, batch, num_atoms))

    def count_parameters(self) -> dict[str, int]:
        """Trainable parameters: ``total`` and ``conv`` (the convolutions alone)."""
        return {
            "total": sum(p.numel() for p in self.parameters()),
            "conv": sum(p.numel() for p in self.convs.parameters()),
        }
