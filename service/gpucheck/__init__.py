"""The GPU path's checks: what a GPU host runs once to prove the service on its GPU.

``python -m service.gpucheck builds`` (no GPU needed; the GPU image runs it when it is built)
checks that torch and onnxruntime are CUDA builds for the same CUDA major version and that
onnxruntime's CUDA provider library finds every library it links, the driver's aside.
``python -m service.gpucheck run`` (on a GPU, inside the image; ``docker/gpu-check.sh`` drives
it) prints the device and builds, starts the service on the GPU and on the CPU for both
backends, compares their answers for NaCl and a folder of CIFs, checks that answers do not
depend on the batch, and times inference at batch 1 and 256. Each exits 0 only when every check
passes.
"""

from __future__ import annotations

from ._builds import BuildReport, build_problems, cuda_major, missing_libraries
from ._compare import Comparison, collect_answers, compare_answers
from ._servers import ServiceProcess

__all__ = [
    "BuildReport",
    "Comparison",
    "ServiceProcess",
    "build_problems",
    "collect_answers",
    "compare_answers",
    "cuda_major",
    "missing_libraries",
]
