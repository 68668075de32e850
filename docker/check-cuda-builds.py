"""Build-time check of docker/Dockerfile.gpu: torch and onnxruntime are their CUDA builds.

``torch==X`` also matches a ``X+cpu`` wheel from the wheel folder, and any dependency that asks for
``onnxruntime`` would shadow ``onnxruntime-gpu``; both would build a "GPU" image that never uses the GPU.
Needs no GPU: it reads what the wheels were compiled for.
"""

from __future__ import annotations

import sys

import onnxruntime
import torch


def main() -> int:
    """Print the builds and return 1 when either lacks CUDA."""
    providers = onnxruntime.get_available_providers()
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), onnxruntime {onnxruntime.__version__} {providers}")
    problems = []
    if torch.version.cuda is None:
        problems.append("torch is a CPU build: check TORCH_VERSION, TORCH_INDEX_URL and the wheel folder")
    if "CUDAExecutionProvider" not in providers:
        problems.append(
            "onnxruntime has no CUDAExecutionProvider: is plain onnxruntime installed over onnxruntime-gpu?"
        )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
