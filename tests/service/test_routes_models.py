"""``GET /v1/models`` and ``GET /v1/models/{name}`` against a live server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest


def test_lists_every_loaded_version_with_its_facts(client: httpx.Client, models_dir: Path) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    refs = [m["ref"] for m in body["models"]]
    assert refs == ["cgcnn-formation-energy@1", "cgcnn-multitask@1", "sr-cgcnn-band-gap@1", "sr-cgcnn-band-gap@2"]
    assert body["defaults"] == {
        "band_gap": "sr-cgcnn-band-gap@2",  # best validation MAE (0.30 < 0.35 < 0.40 of version 1, not latest)
        "formation_energy_per_atom": "cgcnn-formation-energy@1",
    }
    fe = body["models"][0]
    assert fe["architecture"] == "cgcnn"
    assert fe["properties"] == [
        {"name": "formation_energy_per_atom", "unit": "eV/atom", "p_metal": False, "sigma": False}
    ]
    assert fe["uncertainty"] is None  # no uncertainty files: no sigma
    assert fe["default_for"] == ["formation_energy_per_atom"]
    assert fe["parameters"]["total"] > fe["parameters"]["conv"] > 0
    assert fe["graph"]["cutoff"] == 8.0 and len(fe["graph"]["fingerprint"]) == 16
    assert fe["test_mae"] == {"formation_energy_per_atom": pytest.approx(0.055)}
    assert fe["training_set"]["fingerprint"] == "abc123" and fe["training_set"]["n_train"] == 800
    assert (fe["backend"], fe["device"], fe["precision"]) == ("torch", "cpu", "float32")
    assert all(m["batch_invariant"] is True for m in body["models"])
    weights = models_dir / "cgcnn-formation-energy" / "1" / "weights.pt"
    assert fe["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    sr = {m["ref"]: m for m in body["models"]}
    assert sr["sr-cgcnn-band-gap@1"]["architecture"] == "sr-cgcnn"
    assert (sr["sr-cgcnn-band-gap@1"]["latest"], sr["sr-cgcnn-band-gap@2"]["latest"]) == (False, True)
    assert sr["cgcnn-multitask@1"]["default_for"] == []
    assert [p["name"] for p in sr["cgcnn-multitask@1"]["properties"]] == ["formation_energy_per_atom", "band_gap"]


def test_refused_folders_are_listed_with_the_reason(client: httpx.Client) -> None:
    refused = {Path(x["path"]).parent.name: x["reason"] for x in client.get("/v1/models").json()["refused"]}
    assert set(refused) == {"tampered", "alien"}
    assert "sha256" in refused["tampered"]
    assert "format" in refused["alien"]


def test_one_model_by_name_or_name_at_version(client: httpx.Client) -> None:
    latest = client.get("/v1/models/sr-cgcnn-band-gap").json()
    assert (latest["version"], latest["latest"]) == ("2", True)
    older = client.get("/v1/models/sr-cgcnn-band-gap@1").json()
    assert older["version"] == "1" and older["sha256"] != latest["sha256"]
    r = client.get("/v1/models/tampered")
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"
