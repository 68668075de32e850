"""The GPU path on a real CUDA device: skipped without one (``docker/gpu-check.sh`` runs these in the image).

What the CPU tests can only check as options (``tests/core/test_onnx_session.py``,
``tests/service/test_cuda_device.py``) is checked here on the device: onnxruntime really runs on
CUDA with TF32 off and no fallback, torch's sums are repeatable, and the service's answers on the
GPU match its answers on the CPU within the 1e-4 parity contract, for both backends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import crystalgraph as cg
from crystalgraph.onnx_export import export_onnx_checked
from service.backends import resolve_device
from service.backends._cuda import check_device
from service.backends._torch import TorchPredictor
from service.gpucheck import collect_answers, compare_answers
from service.gpucheck._compare import model_refs
from service.settings import Settings

# Deterministic mode needs a reproducible cuBLAS workspace, read at the first cuBLAS call of the
# process, which may come from another test: set it before any test runs (the image sets it too).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FE = cg.KNOWN_TARGETS["formation_energy_per_atom"]
BG = cg.KNOWN_TARGETS["band_gap"]
NAMES = ("nacl", "cu", "cscl", "srtio3", "triclinic", "big", "two_blocks")


@pytest.fixture(scope="module", autouse=True)
def restore_torch_flags() -> Iterator[None]:
    """The service switches deterministic mode on for the process; switch it back after this module."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[cg.CrystalGraphNet, Path]:
    """A full-size multi-task CGCNN with a non-trivial normaliser, and its parity-checked ONNX file."""
    torch.manual_seed(0)
    model = cg.build_model(cg.CGCNNConfig(targets=(FE, BG)))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    model.set_normalizer(torch.tensor([-1.0, 1.5]), torch.tensor([0.7, 1.2]))
    folder = tmp_path_factory.mktemp("gpu-model")
    return model.eval(), export_onnx_checked(model.eval(), folder)


def test_the_device_is_supported_and_prepared() -> None:
    assert resolve_device("cuda") == "cuda:0"
    major, minor = check_device(0)
    assert (major, minor) >= (7, 5)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")


def test_onnxruntime_runs_on_cuda_without_tf32_or_fallback(model_and_onnx) -> None:
    model, path = model_and_onnx
    predictor = cg.OnnxPredictor(path, device="cuda")
    assert predictor.provider == "CUDAExecutionProvider" and predictor.fallback_enabled is False
    assert predictor.provider_options["CUDAExecutionProvider"]["use_tf32"] == "0"
    assert predictor._session.get_session_options().use_deterministic_compute
    reference = model.double()
    try:
        for batch in cg.parity_batches(model.config.graph).values():
            with torch.inference_mode():
                expected = reference.predict(*[t.double() if t.is_floating_point() else t for t in batch])
            got = predictor.predict(*batch)
            np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)
            assert predictor.provider == "CUDAExecutionProvider"
    finally:
        model.float()


def test_torch_on_cuda_is_repeatable_and_batch_invariant_in_float64(model_and_onnx, cifs) -> None:
    model, _ = model_and_onnx
    resolve_device("cuda")
    graphs = [g for n in NAMES for _, g in cg.cif_to_graphs(cifs[n], model.config.graph)] * 8
    predictor = TorchPredictor(model, "cuda:0", "float64")
    try:
        together = predictor.predict(cg.collate(graphs))
        np.testing.assert_array_equal(together, predictor.predict(cg.collate(graphs)))  # deterministic sums
        alone = np.concatenate([predictor.predict(cg.collate([g])) for g in graphs])
        np.testing.assert_allclose(alone, together, rtol=0, atol=1e-12)
        with torch.inference_mode():
            cpu = model.to("cpu", torch.float64).predict(*cg.collate(graphs)).numpy()
        np.testing.assert_allclose(together, cpu, rtol=0, atol=1e-9)
    finally:
        model.to("cpu", torch.float32)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_service_on_cuda_answers_as_on_the_cpu(backend, tmp_path, cifs, live_server_factory, model_and_onnx):
    model, onnx_path = model_and_onnx
    folder = cg.export_model(model, tmp_path, "gpu-mt", "1", {})
    cg.write_manifest(folder, "gpu-mt", "1", extra_files={"onnx": export_onnx_checked(model, folder)})
    files = [(f"{n}.cif", cifs[n].encode()) for n in NAMES]
    answers = {}
    for device in ("cuda", "cpu"):
        srv = live_server_factory(Settings(models_dir=tmp_path, parse_workers=1, device=device, backend=backend))
        with srv.client() as client:
            refs, refused = model_refs(client)
            (info,) = client.get("/v1/models").json()["models"]
            assert refused == [] and info["backend"] == backend
            if device == "cuda":
                assert info["device"] == "cuda:0"
                assert info["provider"] == ("CUDAExecutionProvider" if backend == "onnx" else None)
                assert info["precision"] == ("float32" if backend == "onnx" else "float64")
                alone = collect_answers(client, files, refs, per_request=1)
            answers[device] = collect_answers(client, files, refs)
    diff = compare_answers(answers["cuda"], answers["cpu"], f"cuda/{backend} vs cpu/{backend}", 1e-4)
    assert diff.ok and diff.compared == 2 * 8, diff.lines()
    if backend == "torch":  # the API's promise on CUDA; onnxruntime's CUDA scatter-add uses atomics
        assert compare_answers(alone, answers["cuda"], "alone vs batched", 0.0).ok
