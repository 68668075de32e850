"""The torch backend: the exported ``weights.pt`` in eval mode on a CPU or CUDA device.

A structure must get the same answer alone or in a batch. In float32 on a CPU it did not, by
default: a crystal's answer moved in the 7th digit with the batch it shared (about half of
them, whatever the batch size). Two kernel details cause it, and padding removes both:

- MKL's float32 GEMM takes another code path when the matrix has fewer than 4 rows (a lone
  crystal's pooled features, a 1-3 atom cell); rows of larger products do not depend on the
  number of rows.
- ATen's element-wise kernels (``exp``, ``softplus``, ``sigmoid``) compute the last, partial
  vector of a tensor with scalar code, which can differ in the last bit from the vector code:
  which crystal ends a tensor depends on the batch.

Every batch therefore gets :data:`PAD_GRAPHS` two-atom graphs appended at its end: every
product has at least that many more rows, and the scalar tail falls on the padding. With it,
float32 answers were bit-identical alone and in random batches (1,800 comparisons for each
shipped model). The engine re-checks this at warm-up on the machine it runs on
(``batch_invariant`` in ``/v1/models``). On CUDA, where cuBLAS picks kernels by shape and this
could not be checked, the default precision is float64, where batch effects are about 1e-15.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch

from crystalgraph import CrystalGraphNet, load_exported

__all__ = ["TorchPredictor", "PAD_GRAPHS"]

#: Two-atom graphs appended to every batch (see the module docstring).
PAD_GRAPHS = 8


def _padding(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``PAD_GRAPHS`` Na-Cl pairs bonded both ways at 2.82 Å, indices local to the padding.

    Shapes:
        ``z: [2P]``, ``edge_index: [2, 2P]``, ``edge_dist: [2P]``, ``batch: [2P]``, ``num_atoms: [P]``.
    """
    k = torch.arange(PAD_GRAPHS)
    z = torch.tensor([11, 17]).repeat(PAD_GRAPHS)
    src = torch.stack([2 * k + 1, 2 * k], dim=1).reshape(-1)
    dst = torch.stack([2 * k, 2 * k + 1], dim=1).reshape(-1)
    dist = torch.full((2 * PAD_GRAPHS,), 2.82, dtype=dtype)
    batch = k.repeat_interleave(2)
    num_atoms = torch.full((PAD_GRAPHS,), 2)
    return tuple(t.to(device) for t in (z, torch.stack([src, dst]), dist, batch, num_atoms))  # type: ignore[return-value]


class TorchPredictor:
    """A :class:`~service.backends.Predictor` running a ``crystalgraph`` model with torch.

    Args:
        model: An eval-mode model.
        device: Torch device string.
        precision: ``float32`` or ``float64``.
    """

    backend = "torch"
    provider = None

    def __init__(self, model: CrystalGraphNet, device: str, precision: str = "float32") -> None:
        self.dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.device = device
        self.precision = precision
        self._torch_device = torch.device(device)
        self._pad = _padding(self._torch_device, self.dtype)

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], device: str, precision: str = "float32") -> TorchPredictor:
        """Load ``weights.pt`` after checking its sha256 against the manifest.

        Raises:
            crystalgraph.CheckpointError: corrupt, tampered or unknown-format weights.
        """
        loaded = load_exported(folder, map_location=device)
        return cls(loaded.model, device, precision)

    def predict(self, batch: Batch) -> np.ndarray:
        """Predictions in physical units, ``[B, T]`` (band gaps clipped at 0).

        The batch is padded with :data:`PAD_GRAPHS` small graphs, whose rows are dropped.
        """
        dev = self._torch_device
        z, edge_index = batch.z.to(dev), batch.edge_index.to(dev)
        n_atoms, n_crystals = z.shape[0], int(batch.ptr.shape[0]) - 1
        pad_z, pad_edges, pad_dist, pad_batch, pad_counts = self._pad
        with torch.inference_mode():
            out = self.model.predict(
                torch.cat([z, pad_z]),
                torch.cat([edge_index, pad_edges + n_atoms], dim=1),
                torch.cat([batch.edge_dist.to(dev, self.dtype), pad_dist]),
                torch.cat([batch.batch.to(dev), pad_batch + n_crystals]),
                torch.cat([batch.ptr.diff().to(dev), pad_counts]),
            )
        return out[:n_crystals].cpu().numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.config.model_type}, device={self.device}, {self.precision})"
