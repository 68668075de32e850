"""Batch padding: what makes a float32 answer on a CPU the same alone or in any batch.

In float32 on a CPU, with torch, a crystal's answer moved in the 7th digit with the batch it
shared (about half of them, whatever the batch size). Two kernel details cause it, and padding
removes both:

- MKL's float32 GEMM takes another code path when the matrix has fewer than a few rows (a lone
  crystal's pooled features, a 1-3 atom cell); rows of larger products do not depend on the
  number of rows.
- ATen's element-wise kernels (``exp``, ``softplus``, ``sigmoid``) compute the last, partial vector of
  a tensor with scalar code, which can differ in the last bit from the vector code: which
  crystal ends a tensor depends on the batch.

Every batch therefore gets :data:`PAD_GRAPHS` two-atom graphs appended at its end: every
product has at least that many more rows, and the scalar tail falls on the padding. With it,
float32 answers were bit-identical alone and in random batches for each shipped model
(``tests/service/test_batch_invariance.py``; onnxruntime on one thread needs no padding).
The service's torch backend and the offline :class:`~crystalgraph.Predictor` both pad.
The engine re-checks this at warm-up on the machine it runs on (``batch_invariant`` in
``/v1/models``). On CUDA, where cuBLAS picks
kernels by shape and this could not be checked, the default precision is float64, where batch
effects are about 1e-15.
"""

from __future__ import annotations

import torch

from .batch import ModelInputs

__all__ = ["PAD_GRAPHS", "Padder"]

#: Two-atom graphs appended to every batch (see the module docstring).
PAD_GRAPHS = 8


def _padding(device: torch.device, dtype: torch.dtype) -> ModelInputs:
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
    return ModelInputs(z, torch.stack([src, dst]), dist, batch, num_atoms).to(device)


class Padder:
    """Appends the padding graphs to batches of model inputs, on one device and float type.

    Args:
        device: Where the padded inputs are built.
        dtype: The float type of ``edge_dist``.
    """

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self._pad = _padding(device, dtype)

    def __call__(self, inputs: ModelInputs) -> tuple[ModelInputs, int]:
        """Append the padding graphs to a batch, on this padder's device and float type.

        Args:
            inputs: A collated batch (any device).

        Returns:
            The inputs of ``CrystalGraphNet.predict`` for ``inputs`` plus the padding, and the
            number of real crystals (the first rows of the output).
        """
        dev = self.device
        z, edge_index = inputs.z.to(dev), inputs.edge_index.to(dev)
        n_atoms, n_crystals = z.shape[0], int(inputs.num_atoms.shape[0])
        pad = self._pad
        padded = ModelInputs(
            z=torch.cat([z, pad.z]),
            edge_index=torch.cat([edge_index, pad.edge_index + n_atoms], dim=1),
            edge_dist=torch.cat([inputs.edge_dist.to(dev, self.dtype), pad.edge_dist]),
            batch=torch.cat([inputs.batch.to(dev), pad.batch + n_crystals]),
            num_atoms=torch.cat([inputs.num_atoms.to(dev), pad.num_atoms]),
        )
        return padded, n_crystals
