"""A shipped model whose manifest no longer matches its weights is refused; the others serve.

The manifest repeats the config held in ``weights.pt`` (graph settings, targets, architecture).
The server builds graphs from the manifest, so a hand-edited cutoff, neighbour count, Gaussian
grid or feature hash would silently serve graphs the network was never trained on. Each test
edits a copy of the repository's ``models/`` in a temporary folder, never ``models/`` itself.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Settings
from service.registry import version_key
from service.repository import load_registry

SHIPPED = Path(__file__).resolve().parents[2] / "models"
#: The edited model: the newest shipped formation-energy CGCNN; refused, its name means the one before.
_VERSIONS = sorted((p.name for p in (SHIPPED / "cgcnn-mp-formation-energy").glob("*")), key=version_key)
EDITED, PREVIOUS = f"cgcnn-mp-formation-energy/{_VERSIONS[-1]}", _VERSIONS[-2]

#: ``(key in config.graph, new value)``: each one changes the graphs the model would be served.
EDITS = [
    ("cutoff", 4.0),
    ("max_neighbors", 8),
    ("gaussian_step", 0.1),
    ("gaussian_stop", 6.0),
    ("feature_hash", "0123456789abcdef"),
]


def _shipped_copy(tmp_path: Path) -> Path:
    if not any(SHIPPED.glob("*/*/manifest.json")):
        pytest.skip(f"no shipped models in {SHIPPED}")
    repo = tmp_path / "models"
    shutil.copytree(SHIPPED, repo, ignore=shutil.ignore_patterns("*.png", "*.md"))
    return repo


def _edit_graph(repo: Path, key: str, value: object) -> None:
    path = repo / EDITED / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["config"]["graph"][key] != value
    manifest["config"]["graph"][key] = value
    path.write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize(("key", "value"), EDITS)
def test_an_edited_manifest_is_refused_with_the_key_named_and_the_others_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, key: str, value: object, backend: str
) -> None:
    repo = _shipped_copy(tmp_path)
    shipped = sorted(f"{p.parent.name}@{p.name}" for p in repo.glob("*/*") if (p / "manifest.json").is_file())
    _edit_graph(repo, key, value)
    with caplog.at_level(logging.ERROR, logger="service.repository"):
        registry = load_registry(repo, backend=backend, device="cpu")

    edited_ref = EDITED.replace("/", "@")
    assert sorted(e.ref for e in registry.entries) == [ref for ref in shipped if ref != edited_ref]
    assert [Path(r.path).relative_to(repo).as_posix() for r in registry.refused] == [EDITED]
    reason = registry.refused[0].reason
    assert "manifest.json config differs from weights.pt" in reason
    assert f"graph.{key}: manifest {value!r}" in reason, reason
    assert [r.message for r in caplog.records] == [f"refusing model folder {repo / EDITED}: {reason}"]


def test_an_unedited_copy_of_the_shipped_models_loads_whole(tmp_path: Path) -> None:
    repo = _shipped_copy(tmp_path)
    registry = load_registry(repo, backend="auto", device="cpu")
    assert not registry.refused
    assert len(registry.entries) == len(list(repo.glob("*/*/manifest.json")))


def test_edited_metadata_is_refused_too(tmp_path: Path) -> None:
    repo = _shipped_copy(tmp_path)
    path = repo / EDITED / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["metadata"]["elements"] = manifest["metadata"]["elements"][:5]  # fewer "untrained element" warnings
    path.write_text(json.dumps(manifest))
    registry = load_registry(repo, backend="auto", device="cpu")
    assert len(registry.refused) == 1
    assert "metadata differs from weights.pt at metadata.elements" not in registry.refused[0].reason
    assert registry.refused[0].reason.endswith("manifest.json metadata differs from weights.pt at elements")


def test_a_live_server_refuses_the_edited_model_and_serves_the_others(
    tmp_path: Path, live_server_factory: Callable[..., Any], cifs: dict[str, str]
) -> None:
    repo = _shipped_copy(tmp_path)
    _edit_graph(repo, "cutoff", 4.0)
    live = live_server_factory(Settings(models_dir=repo, parse_workers=1, data_dir=tmp_path / "data"))
    with httpx.Client(base_url=live.url, timeout=120) as client:
        listing = client.get("/v1/models").json()
        [refused] = listing["refused"]
        assert refused["path"].endswith(EDITED) and "graph.cutoff: manifest 4.0, weights 8.0" in refused["reason"]
        served = {f"{m['name']}@{m['version']}" for m in listing["models"]}
        assert EDITED.replace("/", "@") not in served and len(served) == len(list(repo.glob("*/*/manifest.json"))) - 1
        r = client.post("/v1/predict", params={"models": "cgcnn-mp-formation-energy"}, json={"cif": cifs["nacl"]})
        assert r.status_code == 200, r.text
        # the newest version is refused: the name now means the one before
        assert r.json()["predictions"]["formation_energy_per_atom"]["version"] == PREVIOUS
        r = client.post("/v1/predict", params={"models": EDITED.replace("/", "@")}, json={"cif": cifs["nacl"]})
        assert r.status_code == 404 and r.json()["code"] == "unknown_model"
