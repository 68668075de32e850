"""The torch backend: the exported ``weights.pt`` in eval mode on a CPU or CUDA device.

Float32 matrix products (MKL, cuBLAS) are not row-invariant: a crystal's float32 answer moves in
the 7th digit with the size of the batch it shares. In float64 those differences are ~1e-15, far
below the 6 decimals the API returns, so by default the model runs in float64 and a structure
gets the same answer alone or in a batch; ``float32`` trades that for speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from crystalgraph import CrystalGraphNet, load_exported

__all__ = ["TorchPredictor"]


class TorchPredictor:
    """A :class:`~service.backends.Predictor` running a ``crystalgraph`` model with torch.

    Args:
        model: An eval-mode model.
        device: Torch device string.
        precision: ``float64`` or ``float32``.
    """

    backend = "torch"
    provider = None

    def __init__(self, model: CrystalGraphNet, device: str, precision: str = "float64") -> None:
        self.dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.device = device
        self.precision = precision
        self._torch_device = torch.device(device)

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], device: str, precision: str = "float64") -> TorchPredictor:
        """Load ``weights.pt`` after checking its sha256 against the manifest.

        Raises:
            crystalgraph.CheckpointError: corrupt, tampered or unknown-format weights.
        """
        loaded = load_exported(folder, map_location=device)
        return cls(loaded.model, device, precision)

    def predict(self, batch: Batch) -> np.ndarray:
        """Predictions in physical units, ``[B, T]`` (band gaps clipped at 0)."""
        dev = self._torch_device
        with torch.inference_mode():
            out = self.model.predict(
                batch.z.to(dev),
                batch.edge_index.to(dev),
                batch.edge_dist.to(dev, self.dtype),
                batch.batch.to(dev),
                batch.ptr.diff().to(dev),
            )
        return out.cpu().numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.config.model_type}, device={self.device})"
