"""CUDA device preparation on any machine: the compute-capability check and the determinism switches.

The device queries are the one thing replaced here (they need the hardware); the arch list is
the one torch 2.13's CUDA 13 wheel reports.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from service.backends import resolve_device
from service.backends._cuda import (
    DETERMINISTIC_CUBLAS_CONFIGS,
    UnsupportedDevice,
    arch_runs_on,
    check_device,
    configure_cuda,
)
from service.settings import Settings

CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


def _check(capability: tuple[int, int], archs: list[str] = CU130, name: str = "Test GPU") -> tuple[int, int]:
    return check_device(0, capability=lambda i: capability, arch_list=lambda: archs, name=lambda i: name)


@pytest.mark.parametrize(
    ("capability", "gpu"),
    [((7, 5), "T4"), ((8, 0), "A100"), ((8, 6), "RTX 3090"), ((8, 9), "L4"), ((9, 0), "H100"), ((12, 0), "RTX 5090")],
)
def test_supported_gpus_pass(capability: tuple[int, int], gpu: str) -> None:
    assert _check(capability, name=gpu) == capability


@pytest.mark.parametrize(("capability", "gpu"), [((7, 0), "Tesla V100-SXM2-16GB"), ((6, 1), "GTX 1080")])
def test_older_gpus_are_refused_with_the_reason(capability: tuple[int, int], gpu: str) -> None:
    with pytest.raises(UnsupportedDevice) as info:
        _check(capability, name=gpu)
    message = str(info.value)
    assert gpu in message and f"compute capability {capability[0]}.{capability[1]}" in message
    assert "7.5 or newer" in message and "sm_75" in message and "CRYSTAL_DEVICE=cpu" in message
    assert isinstance(info.value, ValueError)  # the service refuses to start, as for a missing device


def test_newer_gpus_run_on_ptx_and_same_major_machine_code() -> None:
    assert _check((13, 0))  # only compute_120 (PTX) covers it
    with pytest.raises(UnsupportedDevice):
        _check((13, 0), archs=["sm_75", "sm_120"])  # no PTX: no kernels for a newer major version


def test_arch_rules() -> None:
    assert arch_runs_on("sm_80", (8, 6)) and not arch_runs_on("sm_86", (8, 0)) and not arch_runs_on("sm_80", (9, 0))
    assert arch_runs_on("sm_90a", (9, 0)) and not arch_runs_on("sm_90a", (9, 1))
    assert arch_runs_on("sm_100f", (10, 3)) and not arch_runs_on("sm_100f", (12, 0))
    assert arch_runs_on("compute_75", (9, 0)) and not arch_runs_on("compute_75", (7, 0))
    assert not arch_runs_on("gfx90a", (9, 0))


def test_an_empty_arch_list_is_not_a_refusal() -> None:
    assert _check((7, 0), archs=[]) == (7, 0)  # nothing to compare with (e.g. a ROCm build)


@pytest.fixture
def restore_torch_flags() -> Iterator[None]:
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def test_configure_cuda_turns_tf32_off_and_determinism_on(monkeypatch, restore_torch_flags) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    configure_cuda()
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == DETERMINISTIC_CUBLAS_CONFIGS[0]


def test_configure_cuda_keeps_a_users_cublas_config_and_only_warns(monkeypatch, restore_torch_flags, caplog) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    configure_cuda()
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG=:0:0" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_auto_is_the_cpu_and_cuda_is_refused() -> None:
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")


def test_batch_limits_per_device() -> None:
    assert Settings().batch_limits("cpu") == (64, 256)
    assert Settings().batch_limits("cuda:0") == (1024, 16_384)
    assert Settings(batch_max_structures=8, batch_max_atoms=100).batch_limits("cuda:1") == (8, 100)


def test_the_warm_up_warning_gives_advice_that_fits_the_backend_and_device() -> None:
    from types import SimpleNamespace

    from service.warmup import _advice

    def predictor(backend: str, device: str, precision: str) -> SimpleNamespace:
        return SimpleNamespace(backend=backend, device=device, precision=precision, provider=None)

    assert "CRYSTAL_BACKEND=torch" in _advice(predictor("onnx", "cuda:0", "float32"))
    assert "below the 6 decimals" in _advice(predictor("torch", "cuda:0", "float64"))
    assert "CRYSTAL_PRECISION=float64" in _advice(predictor("torch", "cpu", "float32"))
