"""The torch backend: the exported ``weights.pt`` in eval mode on a CPU or CUDA device.

Every batch is padded (:mod:`crystalgraph.padding`) so that a structure gets the same
float32 answer alone or in any batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from crystalgraph import CrystalGraphNet, ModelInputs, load_exported

from ._padding import Padder

__all__ = ["TorchPredictor"]


class TorchPredictor:
    """A :class:`~service.backends.Predictor` running a ``crystalgraph`` model with torch.

    Args:
        model: An eval-mode model.
        device: Torch device string.
        precision: ``float32`` or ``float64``.
    """

    backend = "torch"
    provider: str | None = None  # as typed by the Predictor protocol; torch has no detail to add

    def __init__(self, model: CrystalGraphNet, device: str, precision: str = "float32") -> None:
        self.dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
        self.model = model.to(device=device, dtype=self.dtype).eval()
        self.device = device
        self.precision = precision
        self._pad = Padder(torch.device(device), self.dtype)

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], device: str, precision: str = "float32") -> TorchPredictor:
        """Load ``weights.pt`` after checking its sha256 against the manifest.

        Raises:
            crystalgraph.CheckpointError: corrupt, tampered or unknown-format weights.
        """
        loaded = load_exported(folder, map_location=device)
        return cls(loaded.model, device, precision)

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """Predictions in physical units, ``[B, T]`` (band gaps clipped at 0), from a padded batch."""
        padded, n_crystals = self._pad(inputs)
        with torch.inference_mode():
            out = self.model.predict(*padded)
        return out[:n_crystals].cpu().numpy()

    #: :meth:`predict_embedded` is available (every crystalgraph model pools an embedding).
    has_embedding = True

    def predict_embedded(self, inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and the pooled crystal embeddings, ``([B, T], [B, D])``, in one pass."""
        padded, n_crystals = self._pad(inputs)
        with torch.inference_mode():
            crys = self.model.pool(*padded)
            out = self.model.denormalize(self.model.readout(crys))
        return out[:n_crystals].cpu().numpy(), crys[:n_crystals].float().cpu().numpy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.config.model_type}, device={self.device}, {self.precision})"
