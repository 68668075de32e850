"""The registry without HTTP: loading, refusing, versions, defaults, selection."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from service.errors import ModelNotFound
from service.registry import Registry, version_key
from service.repository import load_registry


@pytest.fixture(scope="module")
def registry(models_dir: Path) -> Registry:
    return load_registry(models_dir, backend="torch", device="cpu")


def test_version_key_sorts_naturally() -> None:
    assert sorted(["10", "9", "2", "v10", "v9"], key=version_key) == ["2", "9", "10", "v9", "v10"]
    assert max(["2024-05-30", "2024-06-01"], key=version_key) == "2024-06-01"


def test_loads_good_folders_and_refuses_the_rest_with_a_log_line(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.repository"):
        registry = load_registry(models_dir, backend="torch", device="cpu")
    assert [e.ref for e in registry.entries] == [
        "cgcnn-formation-energy@1",
        "cgcnn-multitask@1",
        "sr-cgcnn-band-gap@1",
        "sr-cgcnn-band-gap@2",
    ]
    refused = [r.message for r in caplog.records if r.name == "service.repository"]
    assert len(refused) == 2
    assert any("tampered" in m and "sha256" in m for m in refused)
    assert any("alien" in m and "unknown manifest format" in m for m in refused)


def test_name_means_newest_version(registry: Registry) -> None:
    assert registry.get("sr-cgcnn-band-gap").version == "2"
    assert registry.get("sr-cgcnn-band-gap@1").version == "1"
    with pytest.raises(ModelNotFound, match="Loaded models"):
        registry.get("sr-cgcnn-band-gap@3")
    with pytest.raises(ModelNotFound):
        registry.get("tampered")


def test_defaults_best_validation_mae_then_overrides(registry: Registry, models_dir: Path) -> None:
    assert {p: e.ref for p, e in registry.defaults.items()} == {
        "band_gap": "sr-cgcnn-band-gap@2",
        "formation_energy_per_atom": "cgcnn-formation-energy@1",
    }
    overridden = Registry(registry.entries, default_overrides={"band_gap": "cgcnn-multitask"})
    assert overridden.defaults["band_gap"].ref == "cgcnn-multitask@1"
    assert overridden.defaults["formation_energy_per_atom"].ref == "cgcnn-formation-energy@1"
    pinned = Registry(registry.entries, default_overrides={"band_gap": "sr-cgcnn-band-gap@1"})
    assert pinned.defaults["band_gap"].ref == "sr-cgcnn-band-gap@1"


def test_a_bad_default_override_falls_back_with_an_error_log(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        bad = Registry(registry.entries, default_overrides={"band_gap": "cgcnn-formation-energy", "efermi": "x"})
    assert bad.defaults["band_gap"].ref == "sr-cgcnn-band-gap@2"
    assert any("band_gap" in r.message for r in caplog.records)
    assert any("efermi" in r.message for r in caplog.records)


def test_without_metrics_the_first_model_by_name_is_the_default(registry: Registry) -> None:
    bare = [e for e in registry.entries if e.name == "cgcnn-multitask"]
    assert Registry(bare).defaults["band_gap"].ref == "cgcnn-multitask@1"


def test_select_defaults_and_named_models(registry: Registry) -> None:
    default = registry.select(None)
    assert [e.ref for e in default.entries] == ["sr-cgcnn-band-gap@2", "cgcnn-formation-energy@1"]
    assert not default.alternatives
    assert len(default.graph_configs) == 1  # all models share one graph fingerprint
    named = registry.select(["cgcnn-multitask", "sr-cgcnn-band-gap", "cgcnn-multitask"])
    assert [e.ref for e in named.entries] == ["cgcnn-multitask@1", "sr-cgcnn-band-gap@2"]
    assert {p: e.ref for p, e in named.primary.items()} == {
        "formation_energy_per_atom": "cgcnn-multitask@1",
        "band_gap": "cgcnn-multitask@1",
    }
    assert named.alternatives


def test_empty_or_missing_repository(tmp_path: Path) -> None:
    assert len(load_registry(tmp_path / "nope", backend="torch", device="cpu")) == 0
    assert load_registry(tmp_path, backend="torch", device="cpu").defaults == {}


def test_a_folder_with_weights_that_do_not_fit_the_config_is_refused(models_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(models_dir / "cgcnn-formation-energy", repo / "a")
    shutil.copy(models_dir / "sr-cgcnn-band-gap" / "1" / "weights.pt", repo / "a" / "1" / "weights.pt")
    registry = load_registry(repo, backend="torch", device="cpu")
    assert len(registry) == 0 and "sha256" in registry.refused[0].reason
