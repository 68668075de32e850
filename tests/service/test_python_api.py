"""The Python API: ``crystalgraph.Predictor`` offline and ``crystal_client.RemotePredictor``, against the HTTP answers.

Both run on the test repository of ``conftest.py`` (the offline one in-process, the remote one
against the shared live server); every answer must equal the service's to 1e-6.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

import crystalgraph as cg
from crystal_client import RemotePredictor


def assert_same(offline: Any, http: Any, where: str = "") -> None:
    """Equal answers: numbers to 1e-6, the rest exactly (offline may add ``sigma: None``)."""
    if isinstance(http, dict):
        assert isinstance(offline, dict), where
        extra = set(offline) - set(http)
        assert extra <= {"sigma"} and all(offline[k] is None for k in extra), (where, extra)
        assert set(http) <= set(offline), (where, set(http) - set(offline))
        for key, value in http.items():
            assert_same(offline[key], value, f"{where}.{key}")
    elif isinstance(http, list):
        assert isinstance(offline, list) and len(offline) == len(http), where
        for k, (a, b) in enumerate(zip(offline, http, strict=True)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(http, float) and not isinstance(offline, str):
        assert math.isclose(offline, http, abs_tol=1e-6), (where, offline, http)
    else:
        assert offline == http, (where, offline, http)


@pytest.fixture(scope="module")
def predictor(models_dir: Path) -> cg.Predictor:
    return cg.Predictor(models_dir)


@pytest.fixture
def remote(server: Any) -> Any:
    with RemotePredictor(server.url) as remote:
        yield remote


def test_offline_loads_the_repository_as_the_service_does(predictor: cg.Predictor, client: httpx.Client) -> None:
    listed = client.get("/v1/models").json()
    assert {p: e.ref for p, e in predictor.defaults.items()} == {
        p: f"{d['name']}@{d['version']}" if isinstance(d, dict) else d for p, d in listed["defaults"].items()
    }
    assert sorted(Path(path).parent.name for path, _ in predictor.refused) == ["alien", "tampered"]
    assert predictor.get("sr-cgcnn-band-gap@latest").version == "2"


def test_a_structure_atoms_and_a_path_give_the_http_answers(
    predictor: cg.Predictor, remote: RemotePredictor, client: httpx.Client, nacl: Structure, cifs: dict, tmp_path: Path
) -> None:
    http = client.post("/v1/predict", json={"structure": nacl.as_dict(), "format": "pymatgen-json"}).json()
    offline = predictor.predict(nacl)
    assert isinstance(offline, cg.Answer) and offline.structure.reduced_formula == "NaCl"
    assert_same(offline.to_dict(), http)
    assert_same(remote.predict(nacl), http)
    assert offline.predictions["formation_energy_per_atom"].sigma is None  # these test models have no uncertainty

    atoms = AseAtomsAdaptor.get_atoms(nacl)
    assert_same(predictor.predict(atoms).to_dict(), remote.predict(atoms))
    assert_same(predictor.predict(atoms).to_dict(), http)

    path = tmp_path / "srtio3.cif"
    path.write_text(cifs["srtio3"])
    http = client.post("/v1/predict", files={"file": ("srtio3.cif", cifs["srtio3"])}).json()
    assert_same(predictor.predict(path).to_dict(), http)
    assert_same(predictor.predict(str(path)).to_dict(), remote.predict(path))


def test_a_list_gives_the_batch_items(
    predictor: cg.Predictor,
    remote: RemotePredictor,
    client: httpx.Client,
    nacl: Structure,
    cifs: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("two_blocks", "garbage", "cu"):
        (tmp_path / f"{name}.cif").write_text(cifs[name])
    paths = [tmp_path / f"{name}.cif" for name in ("two_blocks", "garbage", "cu")]
    inputs = [paths[0], nacl, paths[1], AseAtomsAdaptor.get_atoms(nacl), str(paths[2])]
    offline = predictor.predict(inputs, progress=True)
    assert "predicting: 100%" in capsys.readouterr().err, "a progress bar"
    assert isinstance(offline, list)
    assert [(item.index, item.ok) for item in offline] == [
        (0, True),
        (0, True),
        (1, True),
        (2, False),
        (3, True),
        (4, True),
    ]
    assert offline[0].filename.endswith("two_blocks.cif#NaCl") and offline[3].error.code == "invalid_cif"
    remote_items = remote.predict(inputs)
    assert [(i["index"], i["ok"]) for i in remote_items] == [(item.index, item.ok) for item in offline]
    for off, rem in zip(offline, remote_items, strict=True):
        answer = off.to_dict()
        if off.ok:
            answer.pop("filename"), rem.pop("filename")
        else:
            answer["error"].pop("detail"), rem["error"].pop("detail")  # the sentences may name the file differently
            answer.pop("filename"), rem.pop("filename")
        assert_same(answer, rem)


def test_named_models_alternatives_and_aliases(
    models_dir: Path, remote: RemotePredictor, server: Any, nacl: Structure
) -> None:
    offline = cg.Predictor(models_dir, models=["cgcnn-multitask", "default"])
    answer = offline.predict(nacl)
    assert (
        answer.predictions["band_gap"].model == "cgcnn-multitask" and answer.predictions["band_gap"].p_metal is not None
    )
    assert [a.model for a in answer.alternatives["band_gap"]] == ["sr-cgcnn-band-gap"]
    with RemotePredictor(server.url, models=["cgcnn-multitask", "default"]) as named:
        assert_same(answer.to_dict(), named.predict(nacl))
    latest = cg.Predictor(models_dir, models=["sr-cgcnn-band-gap@latest"])
    assert latest.predict(nacl).predictions["band_gap"].version == "2"


def test_refusals(predictor: cg.Predictor, cifs: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad.cif"
    bad.write_text(cifs["garbage"])
    with pytest.raises(cg.StructureError) as refused:
        predictor.predict(bad)
    assert refused.value.code == "invalid_cif"
    with pytest.raises(TypeError, match="pymatgen Structure, ASE Atoms or a file path"):
        predictor.predict(42)
    with pytest.raises(ValueError, match="No model 'nope'"):
        cg.Predictor(predictor.models_dir, models=["nope"])


def test_the_shipped_models_offline() -> None:
    predictor = cg.Predictor()  # models/ of this checkout
    assert not predictor.refused
    answer = predictor.predict(Path(__file__).resolve().parents[2] / "examples" / "NaCl.cif")
    assert set(answer.predictions) == {"formation_energy_per_atom", "band_gap"}
    assert -3.0 < answer.predictions["formation_energy_per_atom"].value < -1.0
    assert set(answer.provenance) == {f"{p.model}@{p.version}" for p in answer.predictions.values()}
