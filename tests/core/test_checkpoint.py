from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crystalgraph import (
    KNOWN_TARGETS,
    CGCNNConfig,
    CheckpointError,
    LegacyFormatError,
    SRCGCNNConfig,
    build_model,
    collate,
    export_model,
    import_legacy,
    load_checkpoint,
    load_exported,
    read_manifest,
    structure_to_graph,
    verify_manifest,
)

EF = KNOWN_TARGETS["formation_energy_per_atom"]


def _trained_like(config) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(config)
    for p in model.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    model.set_normalizer(torch.tensor([-1.5] * len(config.targets)), torch.tensor([0.8] * len(config.targets)))
    return model.eval()


@pytest.mark.parametrize("config", [CGCNNConfig(targets=(EF,)), SRCGCNNConfig(targets=(EF, KNOWN_TARGETS["band_gap"]))])
def test_export_and_load_round_trip_gives_the_same_predictions(tmp_path, config, nacl, triclinic):
    model = _trained_like(config)
    folder = export_model(model, tmp_path, "m", "1", {"elements": ["Na", "Cl"], "metrics": {"test": {}}})
    loaded = load_exported(folder)
    batch = collate([structure_to_graph(nacl), structure_to_graph(triclinic)])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.predict(*batch), model.predict(*batch))
    manifest = read_manifest(folder)
    assert manifest["config"]["model_type"] == config.model_type
    assert manifest["metadata"]["normalizer"]["mean"] == pytest.approx([-1.5] * len(config.targets))
    assert manifest["metadata"]["elements"] == ["Na", "Cl"]
    assert manifest["config"]["graph"]["feature_hash"] == config.graph.feature_hash
    assert len(manifest["files"]["weights"]["sha256"]) == 64
    # plain data only: loads with weights_only=True
    raw = torch.load(folder / "weights.pt", weights_only=True)
    assert set(raw) == {"format", "format_version", "config", "state_dict", "metadata"}


def test_corrupt_weights_are_refused(tmp_path):
    folder = export_model(_trained_like(CGCNNConfig(targets=(EF,))), tmp_path, "m", "1")
    data = bytearray((folder / "weights.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_exported(folder)


def test_a_manifest_whose_config_differs_from_the_weights_is_refused(tmp_path):
    folder = export_model(_trained_like(CGCNNConfig(targets=(EF,))), tmp_path, "m", "1")
    assert verify_manifest(folder, read_manifest(folder)) == CGCNNConfig(targets=(EF,))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["config"]["graph"]["cutoff"] = 4.0
    manifest["config"]["n_conv"] = 2
    (folder / "manifest.json").write_text(json.dumps(manifest))
    message = "config differs from weights.pt .graph.cutoff: manifest 4.0, weights 8.0; n_conv: manifest 2, weights 3."
    with pytest.raises(CheckpointError, match=message):
        verify_manifest(folder, read_manifest(folder))
    with pytest.raises(CheckpointError, match="config differs"):
        load_exported(folder)


def test_unknown_format_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a crystalgraph-checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "pickled.pt").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "pickled.pt")


def test_tampered_feature_table_is_refused(tmp_path):
    model = _trained_like(CGCNNConfig(targets=(EF,)))
    model.atom_features[26, 0] = 1.0
    from crystalgraph import save_checkpoint

    save_checkpoint(model, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="feature table hash"):
        load_checkpoint(tmp_path / "w.pt")


# --- legacy import -------------------------------------------------------------------------------


def _reference_forward(sd: dict, atom_init: dict, graph, n_conv: int, shared: bool) -> float:
    """The reference CGCNN forward, written from its published code, on our neighbour list."""
    x = torch.stack([torch.tensor(atom_init[str(int(z))]) for z in graph.z])
    x = F.linear(x, sd["embedding.weight"], sd["embedding.bias"])
    centers = torch.arange(0, 8.2, 0.2)
    u = torch.exp(-((graph.edge_dist[:, None] - centers) ** 2) / 0.2**2)
    src, dst = graph.edge_index

    def bn(h, p):
        return F.batch_norm(h, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"])

    for k in range(n_conv):
        fc = "convs.0.fc_full" if shared else f"convs.{k}.fc_full"
        h = F.linear(torch.cat([x[dst], x[src], u], 1), sd[fc + ".weight"], sd[fc + ".bias"])
        h = bn(h, f"convs.{k}.bn1")
        filt, core = h.chunk(2, 1)
        agg = torch.zeros_like(x).index_add_(0, dst, torch.sigmoid(filt) * F.softplus(core))
        x = F.softplus(x + bn(agg, f"convs.{k}.bn2"))
    crys = x.mean(0, keepdim=True)
    h = F.softplus(F.linear(F.softplus(crys), sd["conv_to_fc.weight"], sd["conv_to_fc.bias"]))
    out = F.linear(h, sd["fc_out.weight"], sd["fc_out.bias"])
    return float(out * 0.7 + (-1.2))


def _write_legacy(tmp_path, shared: bool):
    g = torch.Generator().manual_seed(7)
    atom_init = {str(z): torch.rand(92, generator=g).round().tolist() for z in range(1, 101)}
    (tmp_path / "atom_init.json").write_text(json.dumps(atom_init))

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    sd = {"embedding.weight": rnd(64, 92), "embedding.bias": rnd(64)}
    for k in range(3):
        first = (sd.get("convs.0.fc_full.weight"), sd.get("convs.0.fc_full.bias"))
        fc = first if shared and k else (rnd(128, 169), rnd(128))
        sd[f"convs.{k}.fc_full.weight"], sd[f"convs.{k}.fc_full.bias"] = fc
        for name, n in (("bn1", 128), ("bn2", 64)):
            sd[f"convs.{k}.{name}.weight"] = 1 + rnd(n)
            sd[f"convs.{k}.{name}.bias"] = rnd(n)
            sd[f"convs.{k}.{name}.running_mean"] = rnd(n)
            sd[f"convs.{k}.{name}.running_var"] = 1 + rnd(n).abs()
            sd[f"convs.{k}.{name}.num_batches_tracked"] = torch.tensor(100)
    sd.update(
        {
            "conv_to_fc.weight": rnd(128, 64),
            "conv_to_fc.bias": rnd(128),
            "fc_out.weight": rnd(1, 128),
            "fc_out.bias": rnd(1),
        }
    )
    args = argparse.Namespace(task="regression", atom_fea_len=64, h_fea_len=128, n_conv=3, n_h=1, lr=0.01)
    raw = {
        "epoch": 30,
        "state_dict": sd,
        "best_mae_error": 0.05,
        "optimizer": {},
        "normalizer": {"mean": torch.tensor(-1.2), "std": torch.tensor(0.7)},
        "args": args,
    }
    if shared:
        raw.update(conv_mode="shared", n_recurrent_steps=3)
    torch.save(raw, tmp_path / "model_best.pth.tar")
    return sd, atom_init


@pytest.mark.parametrize("shared", [False, True], ids=["cgcnn", "sr-cgcnn"])
def test_legacy_checkpoint_converts_and_predicts_like_the_reference(tmp_path, shared, perovskite):
    sd, atom_init = _write_legacy(tmp_path, shared)
    model, meta = import_legacy(tmp_path / "model_best.pth.tar", tmp_path / "atom_init.json", EF)
    assert model.config.model_type == ("sr-cgcnn" if shared else "cgcnn")
    assert model.count_parameters()["conv"] == (22_912 if shared else 66_432)
    graph = structure_to_graph(perovskite)
    with torch.no_grad():
        ours = float(model.predict(*collate([graph])))
    assert ours == pytest.approx(_reference_forward(sd, atom_init, graph, 3, shared), rel=1e-5)
    # and it survives our own export / load
    folder = export_model(model, tmp_path / "models", "legacy", "1", meta)
    again = load_exported(folder).model
    with torch.no_grad():
        assert float(again.predict(*collate([graph]))) == pytest.approx(ours, abs=1e-6)


def test_legacy_import_refuses_other_files(tmp_path):
    (tmp_path / "atom_init.json").write_text(json.dumps({"1": [0.0] * 92}))
    torch.save({"weights": np.zeros(3).tolist()}, tmp_path / "other.pt")
    with pytest.raises(LegacyFormatError, match="state_dict"):
        import_legacy(tmp_path / "other.pt", tmp_path / "atom_init.json", EF)
