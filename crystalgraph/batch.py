"""The graph interchange format: what a model takes, and many graphs packed for fast batching.

A model's forward takes five tensors, :class:`ModelInputs`. :func:`collate` builds them from
graphs one batch at a time (torch-geometric's ``Batch``); :class:`PackedGraphs` stores a whole
data set in flat tensors once and gathers any batch with a handful of vectorised calls, which is
what the training loop does every step (PyG's collation of 64 small graphs costs more than their
forward pass on one CPU thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["ModelInputs", "PackedGraphs"]


class ModelInputs(NamedTuple):
    """The tensors of a batch of crystals, in the order a model's ``forward`` takes them.

    Shapes:
        ``z: [N]`` int64 atomic numbers, ``edge_index: [2, E]`` int64 (row 0 neighbour ``j``, row 1
        centre ``i``, offset into the batch), ``edge_dist: [E]`` float32 Å, ``batch: [N]`` int64
        crystal of each atom, ``num_atoms: [B]`` int64.
    """

    z: Tensor
    edge_index: Tensor
    edge_dist: Tensor
    batch: Tensor
    num_atoms: Tensor

    def to(self, device: torch.device | str) -> ModelInputs:
        """The same inputs on ``device``."""
        return ModelInputs(*(t.to(device, non_blocking=True) for t in self))


def _segments(starts: Tensor, counts: Tensor) -> Tensor:
    """Concatenated ``arange(start, start + count)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(total) + torch.repeat_interleave(starts - offsets, counts, output_size=total)


class PackedGraphs:
    """Many crystal graphs (and optional labels) in flat tensors, gathered into batches.

    ``batch(idx)`` gives exactly the tensors :func:`crystalgraph.collate` followed by
    ``model_inputs`` gives for the same graphs in the same order (tested).

    Args:
        graphs: Graphs with ``z``, ``edge_index`` (local node indices) and ``edge_dist``.
        labels: Optional ``[len(graphs), T]`` labels, returned with each batch.
    """

    def __init__(self, graphs: Sequence[Data], labels: np.ndarray | Tensor | None = None) -> None:
        self.num_nodes = torch.tensor([int(g.num_nodes) for g in graphs], dtype=torch.int64)
        self.num_edges = torch.tensor([int(g.edge_dist.shape[0]) for g in graphs], dtype=torch.int64)
        self.node_ptr = torch.cumsum(self.num_nodes, 0) - self.num_nodes
        self.edge_ptr = torch.cumsum(self.num_edges, 0) - self.num_edges
        empty_i, empty_f = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float32)
        self.z = torch.cat([g.z for g in graphs]) if graphs else empty_i
        self.edge_index = torch.cat([g.edge_index for g in graphs], 1) if graphs else empty_i.reshape(2, 0)
        self.edge_dist = torch.cat([g.edge_dist for g in graphs]) if graphs else empty_f
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self) -> int:
        return int(self.num_nodes.shape[0])

    def batch(self, idx: Sequence[int] | np.ndarray | Tensor) -> tuple[ModelInputs, Tensor | None]:
        """The model inputs of graphs ``idx`` (in that order) and their labels (``[B, T]`` or ``None``)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.int64)
        n, e = self.num_nodes[idx], self.num_edges[idx]
        nodes = _segments(self.node_ptr[idx], n)
        edges = _segments(self.edge_ptr[idx], e)
        new_node_ptr = torch.cumsum(n, 0) - n
        shift = torch.repeat_interleave(new_node_ptr, e, output_size=edges.shape[0])
        b = torch.repeat_interleave(torch.arange(idx.shape[0]), n, output_size=nodes.shape[0])
        inputs = ModelInputs(
            z=self.z[nodes],
            edge_index=self.edge_index[:, edges] + shift,
            edge_dist=self.edge_dist[edges],
            batch=b,
            num_atoms=n,
        )
        return inputs, None if self.labels is None else self.labels[idx]
