"""Run an exported crystal graph network with onnxruntime: a drop-in for ``predict``.

On CUDA three onnxruntime defaults would give wrong or unstable answers without a word, so the
session is built against them (see :func:`cuda_provider_options` and :func:`session_options`):

- **TF32.** The CUDA provider computes float32 matrix products in TF32 unless ``use_tf32`` is
  ``"0"`` (its ``CUDAExecutionProviderInfo`` defaults it to true, Ampere and newer). TF32 keeps 10
  mantissa bits: emulated on a CPU it moved the shipped models' answers by 3e-4 to 2.4e-3, beyond
  the 1e-4 parity contract of :func:`export_onnx_checked`.
- **Fallback.** ``InferenceSession`` catches a provider failure, at creation and in ``run``,
  and silently recreates the session on ``CPUExecutionProvider``. Both are switched off
  (``enable_fallback=0`` and :meth:`disable_fallback`), and after any failed run the active
  providers are checked again: a model asked to run on CUDA runs there or raises.
- **Determinism.** ``use_deterministic_compute`` is set, and cuDNN's algorithm search is
  ``DEFAULT`` (no timing-based choice). onnxruntime's CUDA ``ScatterND``/``ScatterElements``
  with ``reduction="add"`` still sum with atomics, so the float32 sums of this graph on CUDA can
  change in the last bits from run to run and with the batch: the service serves CUDA with torch
  (``service.backends.resolve_backend``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from torch import Tensor

__all__ = [
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "OnnxError",
    "OnnxParityError",
    "OnnxProviderError",
    "OnnxPredictor",
    "cuda_provider_options",
    "session_options",
]

INPUT_NAMES = ("z", "edge_index", "edge_dist", "batch", "num_atoms")
#: The outputs of an exported model: predictions, then the pooled crystal embedding (files
#: exported before the embedding existed have only ``y``).
OUTPUT_NAMES = ("y", "embedding")
_INPUT_DTYPES = (np.int64, np.int64, np.float32, np.int64, np.int64)


class OnnxError(RuntimeError):
    """Base class: an ONNX file that cannot be exported, trusted or run as asked."""


class OnnxParityError(OnnxError):
    """onnxruntime and torch disagree by more than the tolerance (or the graph sums wrongly)."""


class OnnxProviderError(OnnxError):
    """The requested onnxruntime execution provider is not available or not active."""


def cuda_provider_options(device_id: int = 0) -> dict[str, str]:
    """Options of onnxruntime's ``CUDAExecutionProvider`` for this project's graphs.

    ``use_tf32="0"``: exact float32 matrix products (TF32 is on by default from Ampere on and
    breaks the 1e-4 parity contract). ``cudnn_conv_algo_search="DEFAULT"``: a fixed cuDNN
    algorithm rather than one picked by timing (``EXHAUSTIVE``, the default), which can differ
    between runs. Option names as parsed by onnxruntime's ``CUDAExecutionProviderInfo``.
    """
    return {"device_id": str(device_id), "use_tf32": "0", "cudnn_conv_algo_search": "DEFAULT"}


def session_options(num_threads: int | None = None) -> ort.SessionOptions:
    """Session options: all graph optimisations, deterministic compute, optional thread count."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.use_deterministic_compute = True
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    return options


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
    # The CPU provider stays listed: onnxruntime places shape computations on it by design.
    return [("CUDAExecutionProvider", cuda_provider_options(int(index or 0))), "CPUExecutionProvider"]


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
        providers = _providers(device)
        try:
            # enable_fallback=0: a CUDA provider that fails to start raises instead of being
            # replaced by a CPU session (InferenceSession.__init__ retries on CPU otherwise).
            self._session = ort.InferenceSession(
                str(self.path), sess_options=session_options(num_threads), providers=providers, enable_fallback=0
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile classes
            if device != "cpu":
                raise OnnxProviderError(f"{self.path}: onnxruntime cannot run it on {device!r}: {exc}") from exc
            raise OnnxError(f"{self.path}: onnxruntime cannot load it: {exc}") from exc
        # The same for run(): an EP failure would otherwise move the session to the CPU for good.
        self._session.disable_fallback()
        self.provider = self._check_provider()
        names = tuple(i.name for i in self._session.get_inputs())
        if names != INPUT_NAMES:
            raise OnnxError(f"{self.path}: inputs {names} are not {INPUT_NAMES}")
        #: Whether the file also returns the pooled crystal embedding (:meth:`predict_embedded`).
        self.has_embedding = tuple(o.name for o in self._session.get_outputs())[:2] == OUTPUT_NAMES
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
        return self._run(self._feeds(z, edge_index, edge_dist, batch, num_atoms))[0]

    def predict_embedded(
        self,
        z: Tensor | np.ndarray,
        edge_index: Tensor | np.ndarray,
        edge_dist: Tensor | np.ndarray,
        batch: Tensor | np.ndarray,
        num_atoms: Tensor | np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` plus the pooled crystal embedding (files exported with one).

        Shapes:
            as :meth:`predict` -> ``([B, T], [B, D])`` float32 numpy.

        Raises:
            OnnxError: the file has no ``embedding`` output (exported before it existed).
        """
        if not self.has_embedding:
            raise OnnxError(f"{self.path}: no embedding output (re-export with `python -m training export-onnx`)")
        outputs = self._run(self._feeds(z, edge_index, edge_dist, batch, num_atoms))
        return outputs[0], outputs[1]

    def _feeds(self, *inputs: Tensor | np.ndarray) -> dict[str, np.ndarray]:
        feeds = {}
        for name, value, dtype in zip(INPUT_NAMES, inputs, _INPUT_DTYPES, strict=True):
            array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
            feeds[name] = np.ascontiguousarray(array, dtype=dtype)
        return feeds

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            outputs: list[np.ndarray] = self._session.run(None, feeds)
            return outputs
        except Exception:
            self._check_provider()  # raises OnnxProviderError if the session left its device
            raise

    @property
    def fallback_enabled(self) -> bool:
        """Whether onnxruntime may still move this session to the CPU on a failure (never)."""
        return bool(getattr(self._session, "_enable_fallback", True))

    @property
    def provider_options(self) -> dict[str, dict[str, str]]:
        """The options onnxruntime reports for each active provider (``use_tf32`` on CUDA)."""
        return dict(self._session.get_provider_options())

    def _check_provider(self) -> str:
        """The active provider, after checking that it is the one the device asks for.

        Raises:
            OnnxProviderError: CUDA was asked for and the session does not run on it.
        """
        active: list[str] = self._session.get_providers()
        if self.device != "cpu" and (not active or active[0] != "CUDAExecutionProvider"):
            raise OnnxProviderError(
                f"{self.path.name}: asked for {self.device!r}, but onnxruntime runs on {', '.join(active)}"
            )
        return active[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r}, device={self.device!r}, provider={self.provider!r})"
