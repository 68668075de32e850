"""The onnxruntime backend through the API: same answers as torch, reported in /v1/models."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest
import torch

import crystalgraph as cg
from service.settings import Settings

FE = cg.KNOWN_TARGETS["formation_energy_per_atom"]
BG = cg.KNOWN_TARGETS["band_gap"]
NAMES = ("nacl", "cu", "srtio3", "triclinic", "cscl", "big")


@pytest.fixture(scope="module")
def onnx_models(onnx_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's ONNX models (``cg-fe``, ``sr-bg``) plus ``torch-only``, a model without ``model.onnx``."""
    root = tmp_path_factory.mktemp("onnx-and-torch-models")
    for name in ("cg-fe", "sr-bg"):
        shutil.copytree(onnx_models / name, root / name)
    torch.manual_seed(zlib.crc32(b"torch-only"))
    model = cg.build_model(cg.CGCNNConfig(targets=(FE, BG), atom_fea_len=16, h_fea_len=32))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model.set_normalizer(torch.full((2,), -1.0), torch.full((2,), 0.7))
    cg.export_model(model.eval(), root, "torch-only", "1", {})
    return root


def _values(client, cifs: dict) -> dict[tuple[str, str, str], float]:
    files = [("files", (f"{n}.cif", cifs[n])) for n in NAMES]
    out = {}
    for model in ("cg-fe", "sr-bg", "torch-only"):
        results = client.post(f"/v1/predict/batch?models={model}", files=files).json()["results"]
        for r in results:
            assert r["ok"], r
            for prop, pred in r["predictions"].items():
                out[(r["filename"], prop, model)] = pred["value"]
    return out


def test_onnx_backend_matches_torch_through_the_api(onnx_models, cifs, live_server_factory):
    torch_srv = live_server_factory(Settings(models_dir=onnx_models, parse_workers=1, backend="torch"))
    onnx_srv = live_server_factory(
        Settings(models_dir=onnx_models, parse_workers=1, backend="onnx", model_backends={"torch-only": "torch"})
    )
    with onnx_srv.client() as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert {n: m["backend"] for n, m in models.items()} == {"cg-fe": "onnx", "sr-bg": "onnx", "torch-only": "torch"}
        assert models["cg-fe"]["provider"] == "CPUExecutionProvider" and models["cg-fe"]["device"] == "cpu"
        onnx_values = _values(client, cifs)
    with torch_srv.client() as client:
        assert {m["backend"] for m in client.get("/v1/models").json()["models"]} == {"torch"}
        torch_values = _values(client, cifs)
    assert onnx_values.keys() == torch_values.keys() and len(onnx_values) == 6 * 4
    for key, value in torch_values.items():
        assert abs(onnx_values[key] - value) <= 1e-4, key


def test_a_model_without_onnx_file_is_refused_by_the_onnx_backend(onnx_models, live_server_factory):
    srv = live_server_factory(Settings(models_dir=onnx_models, parse_workers=1, backend="onnx"))
    with srv.client() as client:
        body = client.get("/v1/models").json()
    assert sorted(m["name"] for m in body["models"]) == ["cg-fe", "sr-bg"]
    assert len(body["refused"]) == 1 and "no model.onnx" in body["refused"][0]["reason"]


def test_auto_backend_serves_onnx_on_a_cpu_where_a_model_has_it_and_torch_otherwise(onnx_models, live_server_factory):
    srv = live_server_factory(Settings(models_dir=onnx_models, parse_workers=1))  # CRYSTAL_BACKEND=auto
    with srv.client() as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert {n: m["backend"] for n, m in models.items()} == {"cg-fe": "onnx", "sr-bg": "onnx", "torch-only": "torch"}
    assert all(m["batch_invariant"] is True for m in models.values())
    float64 = live_server_factory(Settings(models_dir=onnx_models, parse_workers=1, precision="float64"))
    with float64.client() as client:
        assert {m["backend"] for m in client.get("/v1/models").json()["models"]} == {"torch"}
