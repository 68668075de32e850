"""``export-onnx``: a parity-checked model.onnx next to an exported checkpoint, listed in its manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import crystalgraph as cg
from crystalgraph import onnx_export
from training import onnx_cli


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crystal-train")
    onnx_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = cg.SRCGCNNConfig(targets=(cg.KNOWN_TARGETS["formation_energy_per_atom"], cg.KNOWN_TARGETS["band_gap"]))
    model = cg.build_model(config)
    model.set_normalizer(torch.tensor([-1.5, 1.2]), torch.tensor([1.0, 1.5]))
    return cg.export_model(model.eval(), tmp_path / "models", "srcgcnn-test-multi", "1", {"note": "kept"})


def test_export_onnx_adds_a_verified_file_to_the_manifest(model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    args = _parse(["export-onnx", str(model_dir), "--tol", "1e-4"])
    args.func(args)
    assert "wrote model.onnx" in capsys.readouterr().out
    manifest = cg.read_manifest(model_dir)
    assert set(manifest["files"]) == {"weights", "onnx"}
    assert manifest["metadata"]["note"] == "kept"
    onnx_path = cg.verify_file(model_dir, manifest, "onnx")
    predictor = cg.OnnxPredictor(onnx_path)
    assert predictor.target_names == ["formation_energy_per_atom", "band_gap"]
    model = cg.load_exported(model_dir).model
    inputs = cg.parity_batches(model.config.graph)["64_crystals"]
    with torch.inference_mode():
        np.testing.assert_allclose(predictor.predict(*inputs), model.predict(*inputs).numpy(), rtol=0, atol=1e-4)


def test_export_onnx_reports_failures_and_goes_on(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export = onnx_export.export_onnx

    def export_with_overwrite(model, path, opset=18):  # the legacy exporter's index_add_ trap
        real_export(model, path, opset)
        proto = onnx.load(path)
        for node in proto.graph.node:
            for attr in node.attribute:
                if node.op_type in ("ScatterElements", "ScatterND") and attr.name == "reduction":
                    attr.s = b"none"
        onnx.save(proto, path)
        return path

    monkeypatch.setattr(onnx_export, "export_onnx", export_with_overwrite)
    missing = tmp_path / "models" / "nothing" / "1"
    args = _parse(["export-onnx", str(missing), str(model_dir)])
    with pytest.raises(SystemExit, match="2 of 2 model folders not exported"):
        args.func(args)
    err = capsys.readouterr().err
    assert f"{missing}: not exported" in err and f"{model_dir}: not exported" in err
    assert "max |torch - onnxruntime|" in err
    assert not (model_dir / "model.onnx").exists()
    assert set(cg.read_manifest(model_dir)["files"]) == {"weights"}
