"""Inference backends: how a model folder becomes a :class:`Predictor`.

A backend is a factory ``(folder, manifest, device, precision) -> Predictor`` registered in
:data:`BACKENDS` under the name ``CRYSTAL_BACKEND`` selects: ``torch``
(:mod:`service.backends._torch`) and ``onnx`` (:mod:`service.backends._onnx`). ``auto`` (the
default, :func:`resolve_backend`) picks onnxruntime on a CPU, where ``make bench`` measured it
about twice as fast, and torch on CUDA or in float64. Nothing else in the service knows which
backend runs a model: the registry reads graph settings and targets from
the manifest, and the inference worker only calls :meth:`Predictor.predict`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crystalgraph import ModelInputs

__all__ = [
    "Predictor",
    "BackendFactory",
    "BACKENDS",
    "available_backends",
    "create_predictor",
    "resolve_backend",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger("service.backends")


class Predictor(Protocol):
    """One loaded model, ready to predict on the device it was loaded for.

    Attributes:
        backend: Backend name, as in ``CRYSTAL_BACKEND`` (``torch``).
        device: Where it runs (``cpu``, ``cuda:0``).
        provider: Backend-specific engine detail, e.g. an onnxruntime execution provider;
            ``None`` when there is nothing to add.
        precision: Floating-point type of the computation (``float64``, ``float32``).
    """

    backend: str
    device: str
    provider: str | None
    precision: str

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """Predictions in physical units for a batch of crystals (``crystalgraph.collate``).

        Shapes:
            ``inputs`` of ``B`` crystals -> ``[B, T]`` float32, ``T`` = number of targets,
            in the order of the model config's ``targets``.
        """
        ...


BackendFactory = Callable[[Path, dict[str, Any], str, str], Predictor]


def _load_torch(folder: Path, manifest: dict[str, Any], device: str, precision: str) -> Predictor:
    from ._torch import TorchPredictor

    return TorchPredictor.load(folder, manifest, device, precision)


def _load_onnx(folder: Path, manifest: dict[str, Any], device: str, precision: str) -> Predictor:
    import torch

    from ._onnx import OnnxBackendPredictor

    return OnnxBackendPredictor.load(folder, manifest, device, num_threads=torch.get_num_threads())


#: Backend name -> factory ``(model folder, manifest, device, precision) -> Predictor``.
BACKENDS: dict[str, BackendFactory] = {"torch": _load_torch, "onnx": _load_onnx}


def available_backends() -> list[str]:
    """The backend names ``CRYSTAL_BACKEND`` accepts: ``auto`` and those of :data:`BACKENDS`."""
    return ["auto", *sorted(BACKENDS)]


def resolve_backend(backend: str, manifest: dict[str, Any], device: str, precision: str) -> str:
    """``auto`` to ``onnx`` for a float32 CPU model whose folder has a ``model.onnx``, else ``torch``.

    onnxruntime was about twice as fast as torch on a CPU, with the same bit-identical answers
    alone and in batches on one thread (``python -m bench --only onnx``, README). On CUDA torch
    serves: in deterministic mode its sums are repeatable, while onnxruntime's CUDA scatter-add
    uses atomics (see :mod:`crystalgraph.onnx_predictor`) and its graph is float32 only.
    """
    if backend != "auto":
        return backend
    has_onnx = "onnx" in (manifest.get("files") or {})
    return "onnx" if has_onnx and device == "cpu" and precision == "float32" else "torch"


def create_predictor(
    backend: str, folder: Path, manifest: dict[str, Any], device: str, precision: str = "float32"
) -> Predictor:
    """Load one model folder with the named backend.

    Args:
        backend: A name of :data:`BACKENDS` (already resolved: not ``auto``).
        folder: The exported model folder.
        manifest: The folder's parsed ``manifest.json``.
        device: Where the model runs (``cpu``, ``cuda:0``), already resolved.
        precision: ``float64`` or ``float32`` (see ``Settings.precision``); a backend that
            cannot honour it says so in its ``provider``.

    Raises:
        crystalgraph.CheckpointError: a corrupt or unknown file (the sha256 is checked).
        KeyError: an unknown backend name (the settings refuse these earlier).
    """
    return BACKENDS[backend](folder, manifest, device, precision)


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` to ``float32`` on a CPU and ``float64`` on CUDA; other values unchanged.

    On a CPU float32 is batch-invariant with the torch backend's padding (checked at warm-up).
    On CUDA cuBLAS picks kernels by shape, so float32 batch invariance is not established;
    float64 keeps such effects near 1e-15.

    Args:
        precision: The ``precision`` setting (``auto``, ``float32``, ``float64``).
        device: The resolved device (``cpu``, ``cuda:0``).

    Returns:
        ``float32`` or ``float64`` (``precision`` itself unless it is ``auto``).
    """
    if precision == "auto":
        return "float64" if device.startswith("cuda") else "float32"
    return precision


def resolve_device(device: str) -> str:
    """``auto`` to ``cuda:0`` when a usable CUDA device is visible, else ``cpu``; check explicit choices.

    A CUDA device is prepared for serving (:mod:`service.backends._cuda`): its compute
    capability is checked against the torch build, TF32 is turned off and deterministic
    algorithms on.

    Raises:
        ValueError: CUDA was asked for and is not available, or torch has no kernels for the
            device (``UnsupportedDevice``, with the reason).
    """
    import torch

    from ._cuda import UnsupportedDevice, check_device, configure_cuda

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        try:
            check_device(0)
        except UnsupportedDevice as exc:
            log.warning("CRYSTAL_DEVICE=auto: serving on the CPU: %s", exc)
            return "cpu"
        configure_cuda()
        return "cuda:0"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"CRYSTAL_DEVICE={device} but no CUDA device is available")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"CRYSTAL_DEVICE={device} but only {torch.cuda.device_count()} CUDA device(s) exist")
        check_device(index)
        configure_cuda()
        return f"cuda:{index}"
    return device
