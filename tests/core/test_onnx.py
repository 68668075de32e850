"""ONNX export: parity with torch on several batch shapes, add-reductions, the refusal path, the predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import crystalgraph as cg
from crystalgraph import _onnx_graph, onnx_export

T = cg.KNOWN_TARGETS
CONFIGS = {
    "cgcnn": cg.CGCNNConfig(targets=(T["band_gap"],)),
    "sr-cgcnn": cg.SRCGCNNConfig(targets=(T["formation_energy_per_atom"],)),
    "multitask": cg.CGCNNConfig(targets=(T["formation_energy_per_atom"], T["band_gap"], T["efermi"]), n_conv=2, n_h=2),
}
EXPORTS = [*CONFIGS, "cgcnn-plain"]  # "-plain": the exporter's own Softplus and ScatterElements (fast=False)


def _model(config: cg.CGCNNConfig | cg.SRCGCNNConfig, mean: float = 1.0, seed: int = 0) -> cg.CrystalGraphNet:
    """A model whose batch norms and normaliser are not the identity (as after training)."""
    torch.manual_seed(seed)
    model = cg.build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    n = len(config.targets)
    model.set_normalizer(torch.full((n,), mean), torch.full((n,), 2.0))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[cg.CrystalGraphNet, Path]]:
    out = {}
    for name in EXPORTS:
        model = _model(CONFIGS[name.removesuffix("-plain")])
        path = tmp_path_factory.mktemp(name) / "model.onnx"
        out[name] = (model, cg.export_onnx(model, path, fast=not name.endswith("-plain")))
    return out


def _set_scatter_reduction(src: Path, dst: Path, reduction: str) -> int:
    proto = onnx.load(src)
    count = 0
    for node in proto.graph.node:
        if node.op_type in ("ScatterElements", "ScatterND"):
            for attr in node.attribute:
                if attr.name == "reduction":
                    attr.s = reduction.encode()
                    count += 1
    onnx.save(proto, dst)
    return count


def test_parity_batches_cover_the_required_shapes() -> None:
    batches = cg.parity_batches(cg.GraphConfig())
    sizes = {name: (b.num_atoms.shape[0], b.z.shape[0]) for name, b in batches.items()}
    assert sizes["one_atom"] == (1, 1)
    assert sizes["one_crystal"][0] == 1
    assert sizes["64_crystals"][0] == 64
    assert sizes["200_atoms"] == (1, 200)
    # every atom has several neighbours, so an overwriting scatter cannot give the sum
    for b in batches.values():
        assert torch.bincount(b.edge_index[1], minlength=b.z.shape[0]).min() >= 4


@pytest.mark.parametrize("name", EXPORTS)
def test_onnx_matches_torch_on_every_batch_shape(exported, name: str) -> None:
    model, path = exported[name]
    worst = cg.check_parity(model, path, tol=1e-4)
    assert 0.0 <= worst <= 1e-4
    predictor = cg.OnnxPredictor(path)
    for batch in cg.parity_batches(model.config.graph).values():
        with torch.inference_mode():
            ref = model.predict(*batch).numpy()
        got = predictor.predict(*batch)
        assert got.shape == (batch.num_atoms.shape[0], len(model.config.targets)) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    # the 64 crystals differ, so parity compares different numbers, not one constant
    many = predictor.predict(*cg.parity_batches(model.config.graph)["64_crystals"])
    assert np.unique(many.round(4), axis=0).shape[0] > 10


@pytest.mark.parametrize("name", EXPORTS)
def test_exported_graph_sums_with_add_reduction_and_has_dynamic_sizes(exported, name: str) -> None:
    model, path = exported[name]
    proto = onnx.load(path)
    scatters = [n for n in proto.graph.node if n.op_type in ("ScatterElements", "ScatterND")]
    plain = name.endswith("-plain")
    assert {n.op_type for n in scatters} == {"ScatterElements" if plain else "ScatterND"}
    assert any(n.op_type == "Softplus" for n in proto.graph.node) == plain
    steps = model.config.n_conv if isinstance(model.config, cg.CGCNNConfig) else model.config.n_steps
    assert len(scatters) == steps + 1  # one per message-passing step, one for the mean pooling
    for node in scatters:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("reduction") == b"add", node

    def shape(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert {v.name: shape(v) for v in [*proto.graph.input, *proto.graph.output]} == {
        "z": ["atoms"],
        "edge_index": [2, "edges"],
        "edge_dist": ["edges"],
        "batch": ["atoms"],
        "num_atoms": ["crystals"],
        "y": ["crystals", len(model.config.targets)],
        "embedding": ["crystals", model.config.atom_fea_len],
    }


@pytest.mark.parametrize("name", EXPORTS)
def test_exported_embedding_equals_torch_pool(exported, name: str) -> None:
    model, path = exported[name]
    predictor = cg.OnnxPredictor(path)
    inputs = cg.parity_batches(model.config.graph)["64_crystals"]
    y, emb = predictor.predict_embedded(*inputs)
    with torch.inference_mode():
        ref = model.pool(*inputs).numpy()
        ref_y = model.denormalize(model.readout(model.pool(*inputs))).numpy()
    # the parity gate's tolerance, relative to the embedding's scale (its values are not normalised)
    np.testing.assert_allclose(emb, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    np.testing.assert_allclose(y, predictor.predict(*inputs), atol=0)
    np.testing.assert_allclose(y, ref_y, atol=1e-4)


def test_fast_softplus_equals_torch_softplus() -> None:
    x = np.concatenate([np.linspace(-40, 40, 4001), [-1e4, -100, 16.9, 17, 19.99, 20, 20.01, 100, 1e4]])
    x = x.astype(np.float32)
    got = _onnx_graph.softplus(x).value  # onnxscript runs the ops eagerly through onnxruntime
    ref = torch.nn.functional.softplus(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-6
    np.testing.assert_array_equal(got[x >= 17], ref[x >= 17])  # torch's "return x" cut-off
    with pytest.raises(NotImplementedError):
        _onnx_graph.softplus(x, beta=2.0)


def test_scatter_rewrite_touches_only_row_broadcast_scatters() -> None:
    h, tp = onnx.helper, onnx.TensorProto
    nodes = [
        h.make_node("Unsqueeze", ["i", "axes"], ["i_col"]),
        h.make_node("Shape", ["u"], ["u_shape"]),
        h.make_node("Expand", ["i_col", "u_shape"], ["i_rows"]),
        h.make_node("ScatterElements", ["d", "i_rows", "u"], ["rows"], axis=0, reduction="add"),
        h.make_node("ScatterElements", ["d", "j", "u"], ["elements"], axis=0, reduction="add"),
    ]
    graph = h.make_graph(
        nodes,
        "scatters",
        [
            h.make_tensor_value_info("d", tp.FLOAT, ["n", 3]),
            h.make_tensor_value_info("i", tp.INT64, ["e"]),
            h.make_tensor_value_info("j", tp.INT64, ["e", 3]),
            h.make_tensor_value_info("u", tp.FLOAT, ["e", 3]),
        ],
        [h.make_tensor_value_info(name, tp.FLOAT, ["n", 3]) for name in ("rows", "elements")],
        initializer=[onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
        value_info=[h.make_tensor_value_info("i_rows", tp.INT64, ["e", 3])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=10)
    rng = np.random.default_rng(0)
    feeds = {
        "d": rng.normal(size=(4, 3)).astype(np.float32),
        "i": np.array([0, 0, 3, 1, 0, 3, 3], dtype=np.int64),  # repeated rows: sums, not overwrites
        "j": rng.integers(0, 4, size=(7, 3)),
        "u": rng.normal(size=(7, 3)).astype(np.float32),
    }
    before = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    assert _onnx_graph.scatter_rows_as_scatter_nd(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Unsqueeze", "ScatterND", "ScatterElements"]
    _onnx_graph.check_scatter_reductions(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(after[0], before[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(after[1], before[1])


@pytest.mark.parametrize("name", ["cgcnn", "cgcnn-plain"])
def test_parity_gate_catches_an_overwriting_scatter(exported, tmp_path: Path, name: str) -> None:
    model, path = exported[name]
    broken = tmp_path / "overwrite.onnx"
    assert _set_scatter_reduction(path, broken, "none") == 4
    with pytest.raises(cg.OnnxParityError, match="max"):
        cg.check_parity(model, broken)


def test_export_checked_refuses_a_failing_file(exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, good = exported["cgcnn"]

    def export_with_overwrite(model, path, opset=18):  # what an index_add_-style export would write
        _set_scatter_reduction(good, path, "none")
        return path

    monkeypatch.setattr(onnx_export, "export_onnx", export_with_overwrite)
    with pytest.raises(cg.OnnxParityError):
        cg.export_onnx_checked(model, tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither model.onnx nor the temp file

    old = tmp_path / "model.onnx"
    old.write_bytes(b"previous")
    with pytest.raises(cg.OnnxParityError):
        cg.export_onnx_checked(model, tmp_path)
    assert old.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [old]


def test_export_checked_into_model_folder_with_manifest(tmp_path: Path) -> None:
    model = _model(CONFIGS["cgcnn"], seed=1)
    folder = cg.export_model(model, tmp_path, "cgcnn-test-band_gap", "1")
    path = cg.export_onnx_checked(model, folder)
    assert path == folder / "model.onnx"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "weights.pt"]
    assert path.stat().st_mode & 0o044 == (folder / "weights.pt").stat().st_mode & 0o044  # readable as weights.pt
    cg.write_manifest(folder, "cgcnn-test-band_gap", "1", extra_files={"onnx": path})
    verified = cg.verify_file(folder, cg.read_manifest(folder), "onnx")
    loaded = cg.load_exported(folder)
    batch = cg.parity_batches(model.config.graph)["64_crystals"]
    with torch.inference_mode():
        ref = loaded.model.predict(*batch).numpy()
    np.testing.assert_allclose(cg.OnnxPredictor(verified).predict(*batch), ref, rtol=0, atol=1e-4)


def test_clipping_of_nonnegative_targets_is_exported(tmp_path: Path) -> None:
    config = cg.CGCNNConfig(targets=(T["formation_energy_per_atom"], T["band_gap"]), n_conv=1)
    model = _model(config, mean=-50.0)  # both far below 0: only the band gap is clipped
    path = cg.export_onnx(model, tmp_path / "model.onnx")
    assert cg.check_parity(model, path) <= 1e-4
    got = cg.OnnxPredictor(path).predict(*cg.parity_batches(config.graph)["64_crystals"])
    assert (got[:, 0] < -40).all() and (got[:, 1] == 0).all()


def test_predictor_reports_cpu_backend_and_targets(exported) -> None:
    model, path = exported["multitask"]
    predictor = cg.OnnxPredictor(path, device="cpu", num_threads=1)
    assert (predictor.backend, predictor.device, predictor.provider) == ("onnx", "cpu", "CPUExecutionProvider")
    assert predictor.target_names == ["formation_energy_per_atom", "band_gap", "efermi"]
    assert predictor.target_units == ["eV/atom", "eV", "eV"]
    batch = cg.parity_batches(model.config.graph)["one_crystal"]
    as_numpy = [t.numpy().astype(np.int32) if t.dtype == torch.int64 else t.numpy() for t in batch]
    np.testing.assert_array_equal(predictor.predict(*as_numpy), predictor.predict(*batch))


def test_predictor_rejects_unknown_devices_and_foreign_files(exported, tmp_path: Path) -> None:
    _, path = exported["cgcnn"]
    with pytest.raises(ValueError, match="device"):
        cg.OnnxPredictor(path, device="gpu")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n"])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    foreign = tmp_path / "identity.onnx"
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, foreign)
    with pytest.raises(cg.OnnxError, match="inputs"):
        cg.OnnxPredictor(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(cg.OnnxError, match="cannot load"):
        cg.OnnxPredictor(garbage)


def test_export_refuses_opsets_below_18(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        cg.export_onnx(_model(CONFIGS["cgcnn"]), tmp_path / "model.onnx", opset=17)
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present")
def test_cuda_without_cuda_provider_is_an_error_not_a_silent_cpu_fallback(exported) -> None:
    _, path = exported["cgcnn"]
    with pytest.raises(cg.OnnxProviderError, match="CUDAExecutionProvider"):
        cg.OnnxPredictor(path, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_predictor_runs_on_cuda_provider_with_parity(exported) -> None:
    model, path = exported["multitask"]
    predictor = cg.OnnxPredictor(path, device="cuda")
    assert (predictor.device, predictor.provider) == ("cuda", "CUDAExecutionProvider")
    gpu_model = model.to("cuda")
    try:
        for batch in cg.parity_batches(model.config.graph).values():
            inputs = [t.to("cuda") for t in batch]
            with torch.inference_mode():
                ref = gpu_model.predict(*inputs).cpu().numpy()
            np.testing.assert_allclose(predictor.predict(*inputs), ref, rtol=0, atol=1e-4)
    finally:
        model.to("cpu")
