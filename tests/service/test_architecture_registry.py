"""A new architecture is one entry in ``crystalgraph.ARCHITECTURES``.

The toy architecture below is declared in this test (a config class, a network class) and
registered with a single registry entry; nothing else changes. With that entry alone the core
parses and builds it, a checkpoint round-trips, and a live server loads, describes and serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import torch
from pydantic import Field
from torch import Tensor, nn

import crystalgraph as cg
from service import Settings
from service.repository import load_registry

FE = cg.KNOWN_TARGETS["formation_energy_per_atom"]


class ToyConfig(cg.ModelConfig):
    """A one-layer gated message passing net."""

    model_type: Literal["toy"] = "toy"
    gate_scale: float = Field(0.5, gt=0)


class _EdgeGate(nn.Module):
    """``x_i + s * sum_j sigmoid(W e_ij) * x_j``: one message-passing step."""

    def __init__(self, atom_fea_len: int, nbr_fea_len: int, scale: float) -> None:
        super().__init__()
        self.gate = nn.Linear(nbr_fea_len, atom_fea_len)
        self.scale = scale

    def forward(self, x: Tensor, edge_attr: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        messages = torch.sigmoid(self.gate(edge_attr)) * x.index_select(0, src)
        return x + self.scale * torch.zeros_like(x).index_add_(0, dst, messages)


class ToyNet(cg.CrystalGraphNet):
    """Embedding, one :class:`_EdgeGate`, pooling and heads."""

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)  # type: ignore[arg-type]  # CrystalGraphNet still names the two shipped configs
        self.convs = _EdgeGate(config.atom_fea_len, config.graph.num_gaussians, config.gate_scale)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[cg.Architecture]:
    """The toy architecture, registered for one test: the single line a new architecture needs."""
    entry = cg.Architecture("toy", ToyConfig, ToyNet, "a toy: one gated message-passing step")
    monkeypatch.setitem(cg.ARCHITECTURES, "toy", entry)  # <- the one registry entry
    yield entry


def _toy_config() -> dict[str, Any]:
    return {"model_type": "toy", "targets": [FE.model_dump()], "atom_fea_len": 8, "h_fea_len": 16}


def test_an_unregistered_architecture_is_refused_by_name() -> None:
    assert "toy" not in cg.architecture_names()
    with pytest.raises(ValueError, match="unknown model_type 'toy'; known: cgcnn, sr-cgcnn"):
        cg.parse_model_config(_toy_config())
    with pytest.raises(TypeError, match="not a registered model config: ToyConfig"):
        cg.build_model(ToyConfig(targets=(FE,)))


def test_an_entry_whose_config_does_not_name_it_is_refused() -> None:
    with pytest.raises(ValueError, match="ToyConfig.model_type must default to 'other'"):
        cg.Architecture("other", ToyConfig, ToyNet)


def test_one_registry_entry_makes_the_core_parse_build_and_round_trip_it(
    toy: cg.Architecture, tmp_path: Path, nacl: Any
) -> None:
    assert cg.architecture_names() == ["cgcnn", "sr-cgcnn", "toy"]
    config = cg.parse_model_config(_toy_config())
    assert isinstance(config, ToyConfig) and config.gate_scale == 0.5
    with pytest.raises(ValueError, match="gate_scale"):
        cg.parse_model_config({**_toy_config(), "gate_scale": -1})
    with pytest.raises(ValueError, match="n_conv"):
        cg.parse_model_config({**_toy_config(), "n_conv": 3})  # unknown keys are an error
    model = cg.build_model(config)
    assert isinstance(model, ToyNet)

    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    folder = cg.export_model(model.eval(), tmp_path / "models", "toy-fe", "1", {"elements": ["Na", "Cl"]})
    loaded = cg.load_exported(folder).model
    assert isinstance(loaded, ToyNet) and loaded.config == config
    inputs = cg.collate([cg.structure_to_graph(nacl)])
    with torch.inference_mode():
        torch.testing.assert_close(loaded.predict(*inputs), model.predict(*inputs))
    assert cg.read_manifest(folder)["config"]["model_type"] == "toy"


def test_one_registry_entry_makes_the_service_load_describe_and_serve_it(
    toy: cg.Architecture,
    tmp_path: Path,
    live_server_factory: Callable[..., Any],
    cifs: dict[str, str],
) -> None:
    models = tmp_path / "models"
    torch.manual_seed(1)
    model = cg.build_model(cg.parse_model_config(_toy_config()))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    cg.export_model(model.eval(), models, "toy-fe", "1", {"elements": ["Na", "Cl"]})

    registry = load_registry(models, backend="torch", device="cpu")
    assert not registry.refused and registry.get("toy-fe").config.model_type == "toy"

    live = live_server_factory(Settings(models_dir=models, parse_workers=1, backend="torch", data_dir=tmp_path / "d"))
    with httpx.Client(base_url=live.url, timeout=120) as client:
        [info] = client.get("/v1/models").json()["models"]
        assert (info["ref"], info["architecture"]) == ("toy-fe@1", "toy")
        r = client.post("/v1/predict", json={"cif": cifs["nacl"]})
        assert r.status_code == 200, r.text
        prediction = r.json()["predictions"]["formation_energy_per_atom"]
    [(_, nacl)] = cg.cif_to_graphs(cifs["nacl"], model.config.graph)
    with torch.inference_mode():
        expected = model.predict(*cg.collate([nacl]))[0, 0].item()
    assert prediction["model"] == "toy-fe" and prediction["value"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
