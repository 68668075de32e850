"""Preparing a CUDA device before any model loads: can torch run on it, and exact, repeatable sums.

Two things go wrong on a GPU without a word, and this module turns them into a refusal or a
setting:

- **No kernels for the device.** A torch CUDA build carries machine code for a list of
  architectures (``torch.cuda.get_arch_list()``: ``sm_75 ... sm_120`` for torch 2.13's CUDA 13
  wheel, which dropped Volta). On an older GPU ``torch.cuda.is_available()`` is still true, and
  every model then fails its warm-up. :func:`check_device` compares the device's compute
  capability with that list first and refuses with the reason.
- **Inexact or unrepeatable sums.** :func:`configure_cuda` keeps TF32 off for torch's float32
  matrix products and cuDNN (``torch.backends.cuda.matmul.allow_tf32``, off by default since
  torch 1.12, and ``torch.backends.cudnn.allow_tf32``, on by default), and switches on
  ``torch.use_deterministic_algorithms``: the CUDA ``scatter_add`` behind every graph sum then
  takes its sorted, atomic-free path, so a structure's answer is the same from run to run. That
  mode makes cuBLAS calls raise unless ``CUBLAS_WORKSPACE_CONFIG`` is ``:4096:8`` or ``:16:8``
  (read once, at the first cuBLAS call), so it is set here when absent. These are process-wide
  switches: the service sets them once, at start-up, for the one device it serves on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence

__all__ = [
    "DETERMINISTIC_CUBLAS_CONFIGS",
    "UnsupportedDevice",
    "arch_runs_on",
    "check_device",
    "configure_cuda",
]

log = logging.getLogger("service.backends.cuda")

#: The ``CUBLAS_WORKSPACE_CONFIG`` values with which cuBLAS is reproducible (and torch agrees).
DETERMINISTIC_CUBLAS_CONFIGS = (":4096:8", ":16:8")

_ARCH_RE = re.compile(r"^(sm|compute)_(\d+)([af]?)$")


class UnsupportedDevice(ValueError):
    """A CUDA device this torch build has no kernels for."""


def arch_runs_on(arch: str, capability: tuple[int, int]) -> bool:
    """Whether code built for ``arch`` runs on a device of compute ``capability``.

    ``arch`` is an entry of ``torch.cuda.get_arch_list()``. Machine code ``sm_XY`` runs on devices
    of the same major version ``X`` and minor ``>= Y``; ``sm_XYa`` (architecture-specific features)
    only on ``X.Y``; ``sm_XYf`` (family) on the same major version. PTX ``compute_XY`` is compiled by
    the driver for any device ``>= X.Y``.
    """
    match = _ARCH_RE.match(arch)
    if match is None:
        return False
    kind, digits, suffix = match.groups()
    code = int(digits)
    major, minor = code // 10, code % 10
    if kind == "compute":
        return capability >= (major, minor)
    if suffix == "a":
        return capability == (major, minor)
    return capability[0] == major and capability[1] >= minor


def check_device(
    index: int,
    *,
    capability: Callable[[int], tuple[int, int]] | None = None,
    arch_list: Callable[[], Sequence[str]] | None = None,
    name: Callable[[int], str] | None = None,
) -> tuple[int, int]:
    """Check that this torch build can run on CUDA device ``index``; its compute capability.

    Args:
        index: The CUDA device.
        capability: The compute-capability query (default ``torch.cuda.get_device_capability``);
            tests pass their own, since the real queries need the hardware.
        arch_list: The build's architectures (default ``torch.cuda.get_arch_list``).
        name: The device-name query (default ``torch.cuda.get_device_name``).

    Raises:
        UnsupportedDevice: no architecture of the build runs on the device.
    """
    import torch

    capability = capability or torch.cuda.get_device_capability
    arch_list = arch_list or torch.cuda.get_arch_list
    name = name or torch.cuda.get_device_name
    cap = tuple(capability(index))
    archs = list(arch_list())
    if archs and not any(arch_runs_on(a, cap) for a in archs):  # type: ignore[arg-type]
        built = sorted({int(m.group(2)) for a in archs if (m := _ARCH_RE.match(a))})
        lowest = f"{built[0] // 10}.{built[0] % 10}" if built else "?"
        raise UnsupportedDevice(
            f"CUDA device {index} ({name(index)}) has compute capability {cap[0]}.{cap[1]}, but this torch "
            f"({torch.__version__}, CUDA {torch.version.cuda}) has kernels only for {' '.join(archs)}: "
            f"compute capability {lowest} or newer is needed. Serve on the CPU (CRYSTAL_DEVICE=cpu) or "
            "install a torch build for this GPU."
        )
    return cap  # type: ignore[return-value]


def configure_cuda() -> None:
    """TF32 off and deterministic algorithms on, for every CUDA computation of this process.

    ``CUBLAS_WORKSPACE_CONFIG`` is set to ``:4096:8`` when absent. If it holds another value,
    cuBLAS is not reproducible; deterministic mode then only warns (instead of failing every
    matrix product) and a warning is logged.
    """
    import torch

    # Exact float32 products: TF32 would move answers by up to ~1e-3 (see crystalgraph.onnx_predictor).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS_CONFIGS[0])
    reproducible = config in DETERMINISTIC_CUBLAS_CONFIGS
    if not reproducible:
        log.warning(
            "CUBLAS_WORKSPACE_CONFIG=%s is not one of %s: cuBLAS results may change from run to run",
            config,
            " ".join(DETERMINISTIC_CUBLAS_CONFIGS),
        )
    torch.use_deterministic_algorithms(True, warn_only=not reproducible)
