"""Run an exported crystal graph network with onnxruntime: a drop-in for ``predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from torch import Tensor

__all__ = ["INPUT_NAMES", "OnnxError", "OnnxParityError", "OnnxProviderError", "OnnxPredictor"]

INPUT_NAMES = ("z", "edge_index", "edge_dist", "batch", "num_atoms")
_INPUT_DTYPES = (np.int64, np.int64, np.float32, np.int64, np.int64)


class OnnxError(RuntimeError):
    """Base class: an ONNX file that cannot be exported, trusted or run as asked."""


class OnnxParityError(OnnxError):
    """onnxruntime and torch disagree by more than the tolerance (or the graph sums wrongly)."""


class OnnxProviderError(OnnxError):
    """The requested onnxruntime execution provider is not available or not active."""


def _providers(device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise OnnxProviderError(
            f"device {device!r} asked for, but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
        )
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]


class OnnxPredictor:
    """An exported model run by onnxruntime, a drop-in for a torch model's ``predict``.

    Args:
        path: The ``.onnx`` file (from :func:`export_onnx`).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. With CUDA the session must really run on
            ``CUDAExecutionProvider`` (onnxruntime falls back to CPU silently otherwise).
        num_threads: onnxruntime intra-op threads; onnxruntime's default (all cores) if ``None``.

    Attributes:
        backend: ``"onnx"``.
        device: The device asked for.
        provider: The active execution provider, e.g. ``"CPUExecutionProvider"``.
        target_names: Names of the output columns, in order.
        target_units: Their units.

    Raises:
        OnnxProviderError: CUDA asked for but not available or not active.
        OnnxError: the file cannot be loaded or its inputs are not those of a crystal graph network.
    """

    backend = "onnx"

    def __init__(self, path: Path, device: str = "cpu", num_threads: int | None = None) -> None:
        self.path = Path(path)
        self.device = device
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        providers = _providers(device)
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile classes
            raise OnnxError(f"{self.path}: onnxruntime cannot load it: {exc}") from exc
        active = self._session.get_providers()
        if device != "cpu" and active[0] != "CUDAExecutionProvider":
            raise OnnxProviderError(f"asked for {device!r}, but onnxruntime runs on {active[0]}")
        self.provider = active[0]
        names = tuple(i.name for i in self._session.get_inputs())
        if names != INPUT_NAMES:
            raise OnnxError(f"{self.path}: inputs {names} are not {INPUT_NAMES}")
        meta = self._session.get_modelmeta().custom_metadata_map
        targets = json.loads(meta.get("targets", "[]"))
        self.target_names = [t["name"] for t in targets]
        self.target_units = [t["unit"] for t in targets]

    def predict(
        self,
        z: Tensor | np.ndarray,
        edge_index: Tensor | np.ndarray,
        edge_dist: Tensor | np.ndarray,
        batch: Tensor | np.ndarray,
        num_atoms: Tensor | np.ndarray,
    ) -> np.ndarray:
        """Predictions in physical units, non-negative targets clipped at 0.

        Takes the inputs of :meth:`CrystalGraphNet.predict` as torch tensors (any device) or
        numpy arrays.

        Shapes:
            ``z: [N]``, ``edge_index: [2, E]``, ``edge_dist: [E]``, ``batch: [N]``,
            ``num_atoms: [B]`` -> ``[B, T]`` float32 numpy.
        """
        feeds = {}
        for name, value, dtype in zip(
            INPUT_NAMES, (z, edge_index, edge_dist, batch, num_atoms), _INPUT_DTYPES, strict=True
        ):
            array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
            feeds[name] = np.ascontiguousarray(array, dtype=dtype)
        return self._session.run(None, feeds)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r}, device={self.device!r}, provider={self.provider!r})"
