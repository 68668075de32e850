"""The graph interchange format: one graph's arrays, what a model takes, and fast batching.

:class:`GraphArrays` is one crystal graph as numpy arrays (what the service's parse workers
send back). A model's forward takes five tensors, :class:`ModelInputs`. :func:`collate` builds
them from graphs one batch at a time (the same tensors torch-geometric's
``Batch.from_data_list`` gives, tested); :class:`PackedGraphs` stores a whole data set in flat
tensors once and gathers any batch with a handful of vectorised calls, which is what the
training loop does every step (PyG's collation of 64 small graphs costs more than their forward
pass on one CPU thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["GraphArrays", "ModelInputs", "PackedGraphs", "collate"]


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


@dataclass(frozen=True)
class GraphArrays:
    """A crystal graph as numpy arrays (cheap to pickle between processes).

    Shapes:
        ``z: [N]`` int64, ``edge_index: [2, E]`` int64 (local node indices), ``edge_dist: [E]`` float32.
    """

    z: np.ndarray
    edge_index: np.ndarray
    edge_dist: np.ndarray

    @classmethod
    def from_data(cls, data: Data) -> GraphArrays:
        """The arrays of a graph built by :func:`crystalgraph.structure_to_graph` (shared, not copied)."""
        return cls(z=data.z.numpy(), edge_index=data.edge_index.numpy(), edge_dist=data.edge_dist.numpy())

    def to_data(self) -> Data:
        """The torch-geometric ``Data`` that ``crystalgraph.structure_to_graph`` built."""
        return Data(
            z=torch.from_numpy(self.z),
            edge_index=torch.from_numpy(self.edge_index),
            edge_dist=torch.from_numpy(self.edge_dist),
            num_nodes=int(self.z.shape[0]),
        )

    @property
    def num_atoms(self) -> int:
        """Number of atoms (nodes)."""
        return int(self.z.shape[0])


def _arrays(graph: Data | GraphArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(z, edge_index, edge_dist, num_atoms)`` of one graph as numpy arrays (views, not copies)."""
    if isinstance(graph, GraphArrays):
        return graph.z, graph.edge_index, graph.edge_dist, graph.num_atoms
    return graph.z.numpy(), graph.edge_index.numpy(), graph.edge_dist.numpy(), int(graph.num_nodes)


def collate(graphs: Sequence[Data | GraphArrays]) -> ModelInputs:
    """Batch graphs into the inputs of one forward pass (node indices offset, ``batch`` vector added).

    Gives exactly the tensors of torch-geometric's ``Batch.from_data_list`` (``z``,
    ``edge_index``, ``edge_dist``, ``batch`` and ``ptr.diff()`` as ``num_atoms``), in the
    dtypes of :class:`ModelInputs`; the tensors are new (not views of the graphs' arrays).

    Args:
        graphs: Graphs with local node indices: ``torch_geometric`` ``Data`` (CPU tensors) or
            :class:`GraphArrays`, in any mix.
    """
    parts = [_arrays(g) for g in graphs]
    counts = np.array([p[3] for p in parts], dtype=np.int64)
    n_edges = np.array([p[1].shape[1] for p in parts], dtype=np.int64)
    starts = np.cumsum(counts) - counts
    if parts:
        z = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
        edge_index = np.concatenate([p[1] for p in parts], axis=1).astype(np.int64, copy=False)
        edge_index = edge_index + np.repeat(starts, n_edges)
        edge_dist = np.concatenate([p[2] for p in parts]).astype(np.float32, copy=False)
    else:
        z, edge_index, edge_dist = np.zeros(0, np.int64), np.zeros((2, 0), np.int64), np.zeros(0, np.float32)
    return ModelInputs(
        z=torch.from_numpy(z),
        edge_index=torch.from_numpy(edge_index),
        edge_dist=torch.from_numpy(edge_dist),
        batch=torch.from_numpy(np.repeat(np.arange(len(parts), dtype=np.int64), counts)),
        num_atoms=torch.from_numpy(counts),
    )


def _segments(starts: Tensor, counts: Tensor) -> Tensor:
    """Concatenated ``arange(start, start + count)`` for each pair, without a Python loop."""
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(total) + torch.repeat_interleave(starts - offsets, counts, output_size=total)


class PackedGraphs:
    """Many crystal graphs (and optional labels) in flat tensors, gathered into batches.

    ``batch(idx)`` gives exactly the tensors :func:`collate` gives for the same graphs in the
    same order (tested).

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
