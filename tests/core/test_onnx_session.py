"""How OnnxPredictor builds its onnxruntime session: the CUDA options, no fallback, deterministic compute.

The CUDA provider itself needs a GPU (``tests/service/test_gpu.py``); what the code asks of it is
checked here, on the options it builds and on a real CPU session built the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import crystalgraph as cg
from crystalgraph.onnx_predictor import _providers, cuda_provider_options, session_options


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[cg.CrystalGraphNet, Path]:
    torch.manual_seed(0)
    model = cg.build_model(cg.CGCNNConfig(targets=(cg.KNOWN_TARGETS["band_gap"],), atom_fea_len=16, h_fea_len=32))
    model.set_normalizer(torch.tensor([1.0]), torch.tensor([2.0]))
    return model.eval(), cg.export_onnx(model.eval(), tmp_path_factory.mktemp("onnx") / "model.onnx")


def test_cuda_provider_options_turn_tf32_off_and_fix_the_cudnn_algorithm() -> None:
    assert cuda_provider_options(1) == {"device_id": "1", "use_tf32": "0", "cudnn_conv_algo_search": "DEFAULT"}


def test_session_options_are_deterministic_and_thread_capped() -> None:
    options = session_options(num_threads=1)
    assert options.use_deterministic_compute
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options().intra_op_num_threads == 0  # onnxruntime's default


def test_cuda_providers_carry_the_options_when_the_provider_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert _providers("cuda:2") == [("CUDAExecutionProvider", cuda_provider_options(2)), "CPUExecutionProvider"]
    assert _providers("cuda")[0] == ("CUDAExecutionProvider", cuda_provider_options(0))
    assert _providers("cpu") == ["CPUExecutionProvider"]


def test_a_real_session_has_no_fallback_and_deterministic_compute(onnx_file) -> None:
    model, path = onnx_file
    predictor = cg.OnnxPredictor(path, device="cpu", num_threads=1)
    assert predictor.fallback_enabled is False
    assert predictor._session.get_session_options().use_deterministic_compute
    assert "CPUExecutionProvider" in predictor.provider_options
    inputs = cg.parity_batches(model.config.graph)["one_crystal"]
    first = predictor.predict(*inputs)
    np.testing.assert_array_equal(first, predictor.predict(*inputs))
    with torch.inference_mode():
        np.testing.assert_allclose(first, model.predict(*inputs).numpy(), rtol=0, atol=1e-4)


def test_a_failed_run_is_raised_and_the_session_stays_where_it_was(onnx_file) -> None:
    _, path = onnx_file
    predictor = cg.OnnxPredictor(path, device="cpu", num_threads=1)
    bad = (np.array([11]), np.array([[0], [5]]), np.array([2.8]), np.array([0]), np.array([1]))  # edge to atom 5
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error classes
        predictor.predict(*bad)
    assert predictor._session.get_providers() == ["CPUExecutionProvider"]
    assert predictor.fallback_enabled is False
