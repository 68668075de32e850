"""The onnxruntime backend: the folder's parity-checked ``model.onnx``.

The ONNX graph computes in float32 whatever ``CRYSTAL_PRECISION`` says (its ``precision``
reports that). With one intra-op thread (``CRYSTAL_TORCH_THREADS``, default 1) its float32
answers are bit-identical alone and in any batch without the torch backend's padding
(``tests/service/test_batch_invariance.py``; the warm-up re-checks it). With more threads
onnxruntime splits the work by batch size, and answers can move in the last bit. With ``cuda``
the CUDA execution provider must really be active: onnxruntime falls back to the CPU silently,
so :class:`crystalgraph.OnnxPredictor` checks and raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crystalgraph import CheckpointError, ModelInputs, OnnxPredictor, verify_file

__all__ = ["OnnxBackendPredictor"]


class OnnxBackendPredictor:
    """A :class:`~service.backends.Predictor` running ``model.onnx`` with onnxruntime."""

    backend = "onnx"
    precision = "float32"

    def __init__(self, session: OnnxPredictor) -> None:
        self.session = session
        self.device = session.device
        self.provider: str | None = session.provider

    @classmethod
    def load(
        cls, folder: Path, manifest: dict[str, Any], device: str, num_threads: int | None = None
    ) -> OnnxBackendPredictor:
        """Load ``model.onnx`` after checking its sha256 against the manifest.

        Raises:
            crystalgraph.CheckpointError: no ONNX file listed, or a corrupt one.
            crystalgraph.OnnxProviderError: CUDA asked for and not active.
        """
        if "onnx" not in manifest.get("files", {}):
            raise CheckpointError(f"{folder}: no model.onnx (export one with `python -m training export-onnx`)")
        path = verify_file(folder, manifest, "onnx")
        return cls(OnnxPredictor(path, device=device, num_threads=num_threads))

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """Predictions in physical units, ``[B, T]`` (band gaps clipped at 0)."""
        return self.session.predict(*inputs)

    @property
    def has_embedding(self) -> bool:
        """Whether ``model.onnx`` also returns the pooled crystal embedding (files exported since it does)."""
        return bool(self.session.has_embedding)

    def predict_embedded(self, inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and the pooled crystal embeddings, ``([B, T], [B, D])``, in one run."""
        return self.session.predict_embedded(*inputs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.session!r})"
