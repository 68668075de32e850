"""Are torch and onnxruntime CUDA builds that can load together? Answered without a GPU.

Three ways to build a "GPU" image that never uses its GPU, all silent until the first request:

- a CPU build of torch (``torch==X`` also matches ``X+cpu`` from a wheel folder), or plain
  ``onnxruntime`` installed over ``onnxruntime-gpu`` (no ``CUDAExecutionProvider``);
- onnxruntime-gpu for another CUDA major version than torch: releases up to 1.26 are CUDA 12
  builds, 1.27 and later CUDA 13 (their ``cuda`` extras ask for ``nvidia-*-cu12`` and
  ``nvidia-*-cu13`` wheels), and torch 2.13's PyPI wheel is a CUDA 13 build. The provider then
  fails to load its libraries at the first session, and every ONNX model is refused;
- a CUDA library missing from the image. ``onnxruntime.get_available_providers()`` lists
  ``CUDAExecutionProvider`` without loading it, so only ``ldd`` on the provider library shows it.
  ``libcuda.so.1`` (and ``libnvidia-*``) come from the host's driver at run time and may be absent.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BuildReport", "build_problems", "cuda_major", "linked_cuda_major", "missing_libraries", "read_builds"]

#: Libraries the NVIDIA container runtime mounts from the host driver; absent at build time.
DRIVER_LIBRARIES = re.compile(r"^(libcuda\.so|libnvidia-)")


def cuda_major(version: str | None) -> int | None:
    """``"13.0"`` -> 13; ``None`` or ``""`` (a CPU build) -> ``None``."""
    if not version:
        return None
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else None


def linked_cuda_major(ldd_output: str) -> int | None:
    """The CUDA major version of the runtime a library links (``libcudart.so.13`` -> 13)."""
    match = re.search(r"\blibcudart\.so\.(\d+)", ldd_output)
    return int(match.group(1)) if match else None


def missing_libraries(ldd_output: str) -> list[str]:
    """The ``lib => not found`` entries of ``ldd``'s output, in order."""
    return [m.group(1) for m in re.finditer(r"^\s*(\S+)\s+=>\s+not found", ldd_output, re.MULTILINE)]


@dataclass
class BuildReport:
    """What the installed torch and onnxruntime were built for.

    Attributes:
        torch_version, torch_cuda: ``torch.__version__``, ``torch.version.cuda`` (``None``: CPU build).
        onnxruntime_version, onnxruntime_cuda: onnxruntime's version and the CUDA version it was
            built with (``""``: no CUDA build), from its ``build_and_package_info``.
        providers: ``onnxruntime.get_available_providers()``.
        build_info: ``onnxruntime.get_build_info()``.
        provider_library: onnxruntime's CUDA provider library, if the package has one.
        missing: Libraries ``ldd`` could not find for it, the driver's included.
        linked_cuda: The CUDA major version of the ``libcudart`` it links, per ``ldd``.
    """

    torch_version: str
    torch_cuda: str | None
    onnxruntime_version: str
    onnxruntime_cuda: str
    providers: list[str]
    build_info: str = ""
    provider_library: Path | None = None
    missing: list[str] = field(default_factory=list)
    linked_cuda: int | None = None

    @property
    def onnxruntime_cuda_major(self) -> int | None:
        """From the build info, else from the CUDA runtime its provider library links."""
        return cuda_major(self.onnxruntime_cuda) or self.linked_cuda

    def lines(self) -> list[str]:
        return [
            f"torch {self.torch_version} (CUDA {self.torch_cuda})",
            f"onnxruntime {self.onnxruntime_version} (CUDA {self.onnxruntime_cuda or None}): "
            + ", ".join(self.providers),
            f"onnxruntime build: {self.build_info}",
            f"CUDA provider library: {self.provider_library or 'none'}"
            + (f"; ldd: not found: {', '.join(self.missing)}" if self.missing else ""),
        ]


def build_problems(report: BuildReport) -> list[str]:
    """What makes these builds unfit for the GPU image, in words (empty: fit)."""
    problems = []
    if report.torch_cuda is None:
        problems.append("torch is a CPU build: check TORCH_VERSION, TORCH_INDEX_URL and the wheel folder")
    if "CUDAExecutionProvider" not in report.providers:
        problems.append("onnxruntime has no CUDAExecutionProvider: is plain onnxruntime installed over onnxruntime-gpu")
    elif report.onnxruntime_cuda_major is None:
        problems.append("onnxruntime does not say which CUDA it was built for (no cuda_version, no libcudart linked)")
    torch_major, ort_major = cuda_major(report.torch_cuda), report.onnxruntime_cuda_major
    if torch_major is not None and ort_major is not None and torch_major != ort_major:
        problems.append(
            f"onnxruntime {report.onnxruntime_version} is built for CUDA {ort_major} and torch {report.torch_version} "
            f"for CUDA {torch_major}: onnxruntime-gpu 1.27+ is CUDA 13, 1.26 and older CUDA 12 (ONNXRUNTIME_GPU)"
        )
    if "CUDAExecutionProvider" in report.providers and report.provider_library is None:
        problems.append("onnxruntime lists CUDAExecutionProvider but has no libonnxruntime_providers_cuda.so")
    absent = [lib for lib in report.missing if not DRIVER_LIBRARIES.match(lib)]
    if absent:
        problems.append(
            f"{report.provider_library}: ldd finds no {', '.join(absent)} (install the onnxruntime-gpu[cuda,cudnn] "
            "extras and check the loader path)"
        )
    return problems


def read_builds() -> BuildReport:
    """Inspect the installed torch and onnxruntime (imports both; needs no GPU)."""
    import onnxruntime
    import torch
    from onnxruntime.capi import onnxruntime_validation

    _, _, ort_cuda = onnxruntime_validation.get_package_name_and_version_info()
    library = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    report = BuildReport(
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        onnxruntime_version=onnxruntime.__version__,
        onnxruntime_cuda=ort_cuda or "",
        providers=list(onnxruntime.get_available_providers()),
        build_info=onnxruntime.get_build_info(),
        provider_library=library if library.is_file() else None,
    )
    if report.provider_library is not None:
        ldd = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=False)
        report.missing = missing_libraries(ldd.stdout + ldd.stderr)
        report.linked_cuda = linked_cuda_major(ldd.stdout)
    return report
