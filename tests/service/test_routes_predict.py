"""``POST /v1/predict`` against a live server: multipart, JSON, raw body, model selection."""

from __future__ import annotations

import httpx
import pytest

PROPS = {"formation_energy_per_atom": "eV/atom", "band_gap": "eV"}


def _check_answer(body: dict) -> None:
    assert set(body["predictions"]) == set(PROPS)
    for prop, unit in PROPS.items():
        pred = body["predictions"][prop]
        assert pred["unit"] == unit
        assert isinstance(pred["value"], float)
    assert body["predictions"]["band_gap"]["value"] >= 0.0


def test_multipart_upload_answers_both_properties_from_the_defaults(client: httpx.Client, cifs: dict) -> None:
    r = client.post("/v1/predict", files={"file": ("nacl.cif", cifs["nacl"], "chemical/x-cif")})
    assert r.status_code == 200, r.text
    body = r.json()
    _check_answer(body)
    assert body["structure"] == {
        "block": "NaCl",
        "formula": "Na4Cl4",
        "reduced_formula": "NaCl",
        "n_sites": 8,
        "volume": pytest.approx(5.64**3, rel=1e-4),
        "elements": ["Cl", "Na"],
    }
    # Defaults: best validation MAE per property; the newest version of a name.
    assert body["predictions"]["formation_energy_per_atom"]["model"] == "cgcnn-formation-energy"
    assert body["predictions"]["band_gap"]["model"] == "sr-cgcnn-band-gap"
    assert body["predictions"]["band_gap"]["version"] == "2"
    assert body["alternatives"] == {}
    assert body["warnings"] == []


def test_json_body_gives_the_same_answer_as_the_upload(client: httpx.Client, cifs: dict) -> None:
    upload = client.post("/v1/predict", files={"file": ("cu.cif", cifs["cu"])}).json()
    as_json = client.post("/v1/predict", json={"cif": cifs["cu"]})
    raw = client.post("/v1/predict", content=cifs["cu"], headers={"Content-Type": "chemical/x-cif"})
    assert as_json.status_code == 200 and raw.status_code == 200
    assert as_json.json() == upload == raw.json()
    assert upload["structure"]["reduced_formula"] == "Cu"


def test_different_crystals_get_different_answers(client: httpx.Client, cifs: dict) -> None:
    values = set()
    for name in ("nacl", "cu", "srtio3", "triclinic"):
        r = client.post("/v1/predict", files={"file": (f"{name}.cif", cifs[name])})
        assert r.status_code == 200, r.text
        _check_answer(r.json())
        values.add(r.json()["predictions"]["formation_energy_per_atom"]["value"])
    assert len(values) == 4


def test_models_parameter_picks_models_and_lists_alternatives(client: httpx.Client, cifs: dict) -> None:
    r = client.post(
        "/v1/predict",
        params={"models": "cgcnn-multitask,sr-cgcnn-band-gap@1"},
        files={"file": ("nacl.cif", cifs["nacl"])},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"]["formation_energy_per_atom"]["model"] == "cgcnn-multitask"
    assert body["predictions"]["band_gap"]["model"] == "cgcnn-multitask"
    [alt] = body["alternatives"]["band_gap"]
    assert (alt["model"], alt["version"], alt["unit"]) == ("sr-cgcnn-band-gap", "1", "eV")
    assert "formation_energy_per_atom" not in body["alternatives"]

    only = client.post("/v1/predict", params={"models": "sr-cgcnn-band-gap"}, files={"file": ("n.cif", cifs["nacl"])})
    assert list(only.json()["predictions"]) == ["band_gap"]
    assert only.json()["predictions"]["band_gap"]["version"] == "2"


def test_element_outside_the_training_set_is_a_warning(client: httpx.Client, cifs: dict) -> None:
    r = client.post("/v1/predict", files={"file": ("cscl.cif", cifs["cscl"])})
    assert r.status_code == 200, r.text
    warnings = r.json()["warnings"]
    assert warnings and all(w["code"] == "element_not_in_training_set" for w in warnings)
    assert any("Cs" in w["detail"] and "cgcnn-formation-energy@1" in w["detail"] for w in warnings)


def test_multi_block_cif_predicts_the_first_block_and_says_so(client: httpx.Client, cifs: dict) -> None:
    r = client.post("/v1/predict", files={"file": ("two.cif", cifs["two_blocks"])})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["structure"]["reduced_formula"] == "NaCl"
    assert body["warnings"][0]["code"] == "multiple_blocks"
    assert "/v1/predict/batch" in body["warnings"][0]["detail"]


def test_a_metal_head_answers_p_metal_beside_the_band_gap(client: httpx.Client, cifs: dict) -> None:
    """A multi-task model with a metal head: one forward pass, p_metal beside its gap, listed in /v1/models."""
    r = client.post("/v1/predict", params={"models": "cgcnn-multitask"}, files={"file": ("nacl.cif", cifs["nacl"])})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert set(preds) == set(PROPS)  # p_metal is not a property of its own
    gap = preds["band_gap"]
    assert 0.0 <= gap["p_metal"] <= 1.0 and gap["model"] == "cgcnn-multitask"
    assert preds["formation_energy_per_atom"]["p_metal"] is None
    info = client.get("/v1/models/cgcnn-multitask").json()
    props = {p["name"]: p for p in info["properties"]}
    assert set(props) == set(PROPS)
    assert props["band_gap"]["p_metal"] and not props["formation_energy_per_atom"]["p_metal"]
    # without a metal head, no probability
    plain = client.post("/v1/predict", files={"file": ("nacl.cif", cifs["nacl"])}).json()
    assert plain["predictions"]["band_gap"]["p_metal"] is None


def test_every_answer_names_the_exact_models_behind_it(client: httpx.Client, cifs: dict, models_dir) -> None:
    """Provenance: each model that answered, with its weights' sha256, training set and graph settings."""
    import json

    body = client.post(
        "/v1/predict",
        params={"models": "cgcnn-multitask,sr-cgcnn-band-gap@1"},
        files={"file": ("nacl.cif", cifs["nacl"])},
    ).json()
    assert set(body["provenance"]) == {"cgcnn-multitask@1", "sr-cgcnn-band-gap@1"}
    for ref, prov in body["provenance"].items():
        name, version = ref.split("@")
        manifest = json.loads((models_dir / name / version / "manifest.json").read_text())
        assert (prov["model"], prov["version"]) == (name, version)
        assert prov["weights_sha256"] == manifest["files"]["weights"]["sha256"]
        assert prov["graph"]["cutoff"] == manifest["config"]["graph"]["cutoff"] and prov["graph"]["fingerprint"]
    batch = client.post("/v1/predict/batch", files=[("files", ("nacl.cif", cifs["nacl"]))]).json()
    used = {p["model"] + "@" + p["version"] for p in batch["results"][0]["predictions"].values()}
    assert set(batch["results"][0]["provenance"]) == used
