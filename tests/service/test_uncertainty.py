"""Calibrated sigma and applicability-domain warnings, through a live server, in every answer shape.

Two small real models (CGCNN and SR-CGCNN, formation energy; a multi-task CGCNN with a metal head
for the band gap) get uncertainty artifacts the way ``python -m training.uncertainty`` writes
them, fitted here on the embeddings of a handful of ordinary crystals built in code.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import crystalgraph as cg
from service import Settings
from training.uncertainty import write_artifacts

FE = cg.KNOWN_TARGETS["formation_energy_per_atom"]
BG = cg.KNOWN_TARGETS["band_gap"]
P_METAL = cg.KNOWN_TARGETS["p_metal"]
SMALL = {"atom_fea_len": 16, "h_fea_len": 32}
TRAIN = ["Na", "Cl", "K", "Br", "Cu", "Sr", "Ti", "O", "Li", "F", "Cs"]


def _cif(s: Structure) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(CifWriter(s))


def _rocksalt(a: str, b: str, lat: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(lat), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _training_like() -> list[Structure]:
    """Ordinary crystals standing in for a training set (lattices scaled by a few percent)."""
    out = []
    for scale in (0.97, 1.0, 1.03):
        out += [
            _rocksalt("Na", "Cl", 5.64 * scale),
            _rocksalt("K", "Br", 6.6 * scale),
            _rocksalt("Li", "F", 4.03 * scale),
            Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61 * scale), ["Cu"], [[0, 0, 0]]),
            Structure(
                Lattice.cubic(3.905 * scale),
                ["Sr", "Ti", "O", "O", "O"],
                [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
            ),
        ]
    out.append(Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))  # Cs: once (rare)
    return out


def _export(root: Path, name: str, model: cg.CrystalGraphNet, seed: int) -> Path:
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    n = len(model.config.targets)
    model.set_normalizer(torch.full((n,), -1.0) + torch.arange(n) * 2.5, torch.full((n,), 0.7))
    meta = {"elements": TRAIN, "dataset": {"fingerprint": "fp-test", "n_train": 16, "split_seed": 42}}
    return cg.export_model(model.eval(), root, name, "1", meta)


def _calibrate(folder: Path, structures: list[Structure], partner: Path | None = None) -> None:
    """Artifacts as ``training.uncertainty`` writes them, from these structures' embeddings.

    With ``partner`` (another model folder of the same property), a combined ensemble map too.
    """
    model = cg.load_exported(folder).model
    graphs = [cg.structure_to_graph(s, model.config.graph) for s in structures]
    with torch.inference_mode():
        emb = model.pool(*cg.collate(graphs)).numpy()
    mean, std = emb.mean(0), emb.std(0) + 1e-6
    centroids = cg.kmeans((emb - mean) / std, 6)
    est = cg.EmbeddingUncertainty(mean, std, centroids, 2, {}, 0.0)
    score = est.score(emb)
    props = [t.name for t in model.config.targets if not t.is_probability]
    knots = {p: (np.array([0.0, float(score.max()) * 2]), np.array([0.05, 0.5])) for p in props}
    ensemble, partners = {}, {}
    if partner is not None:
        m = cg.read_manifest(partner)
        partners = {p: {"model": f"{m['name']}@{m['version']}", "weights_sha256": m["files"]["weights"]["sha256"]}
                    for p in props}  # fmt: skip
        ensemble = {p: (np.array([0.0, 10.0]), np.array([0.07, 0.7]), 0.1, float(np.median(score))) for p in props}
    by_class = {}
    if "band_gap" in props:  # the band gap's sigma reads the neighbour error among crystals of its own class
        z = est.standardise(emb)
        n = len(z)
        by_class = {
            "reference": z,
            "reference_errors": {"band_gap": np.linspace(0.05, 1.5, n, dtype=np.float32)},
            "reference_zero": {"band_gap": np.arange(n) % 2 == 0},  # both classes: predicted 0 eV or not
            "k_reference": 3,
            "score_of": {"band_gap": "neighbour_error_by_class"},
        }
        knots["band_gap"] = (np.array([0.0, 1.5]), np.array([0.05, 0.9]))
    est = cg.EmbeddingUncertainty(mean, std, centroids, 2, knots, float(score.max()) * 1.5, ensemble, **by_class)
    counts: dict[str, int] = {}
    for s in structures:
        for e in {el.symbol for el in s.composition}:
            counts[e] = counts.get(e, 0) + 1
    info = {
        "method": "embedding_distance",
        "how": "test calibration",
        "partners": partners,
        # with a partner, "val"/"test" describe the ensemble sigma and "default" the single-model one
        "properties": {
            p: {"val": {"within_1_sigma": 0.7, "n": 16}, "default": {"val": {"within_1_sigma": 0.68, "n": 16}}}
            if partner is not None
            else {"val": {"within_1_sigma": 0.68, "n": 16}}
            for p in props
        },
        "domain": {
            "element_counts": counts,
            "rare_below": 2,
            "max_atoms": max(len(s) for s in structures),
            "density_g_cm3": [1.0, 9.5],
        },
    }
    write_artifacts(folder, est, info)


@pytest.fixture(scope="module")
def trust_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust-models")
    structures = _training_like()
    cg_fe = _export(root, "cg-fe", cg.build_model(cg.CGCNNConfig(targets=(FE,), **SMALL)), seed=0)
    sr_fe = _export(root, "sr-fe", cg.build_model(cg.SRCGCNNConfig(targets=(FE,), **SMALL)), seed=1)
    mt_bg = _export(root, "mt-bg", cg.build_model(cg.CGCNNConfig(targets=(BG, P_METAL), **SMALL)), seed=2)
    _calibrate(cg_fe, structures, partner=sr_fe)  # a 2-member ensemble for the formation energy
    _calibrate(sr_fe, structures, partner=cg_fe)
    _calibrate(mt_bg, structures)  # the band gap: the neighbour error by class
    return root


def test_the_ensemble_partner_runs_only_when_asked_and_is_in_the_provenance(trust_client: httpx.Client) -> None:
    nacl = _cif(_rocksalt("Na", "Cl", 5.64))
    body = trust_client.post("/v1/predict", files={"file": ("nacl.cif", nacl)}).json()
    fe = body["predictions"]["formation_energy_per_atom"]
    assert fe["model"] == "cg-fe" and "sr-fe@1" not in body["provenance"]
    distance_sigma = fe["sigma"]
    asked = {"uncertainty": "ensemble"}
    body = trust_client.post("/v1/predict", files={"file": ("nacl.cif", nacl)}, params=asked).json()
    fe = body["predictions"]["formation_energy_per_atom"]
    assert fe["model"] == "cg-fe" and body["alternatives"] == {}
    assert "sr-fe@1" in body["provenance"]  # its value went into sigma
    assert fe["sigma"] >= 0.07 and fe["sigma"] != distance_sigma  # the combined map (its floor: 0.07)
    alone = trust_client.post(
        "/v1/predict", files={"file": ("nacl.cif", nacl)}, params={"models": "cg-fe", **asked}
    ).json()
    assert "sr-fe@1" in alone["provenance"]  # named alone, its partner still runs for sigma
    r = trust_client.post("/v1/predict", files={"file": ("nacl.cif", nacl)}, params={"uncertainty": "maybe"})
    assert r.status_code == 422


@pytest.fixture(scope="module")
def trust_client(trust_models: Path, live_server_class, tmp_path_factory) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("trust-data")
    live = live_server_class(Settings(models_dir=trust_models, parse_workers=1, data_dir=data_dir)).start()
    try:
        with live.client() as c:
            yield c
    finally:
        live.stop()


def _codes(answer: dict) -> set[str]:
    return {w["code"] for w in answer["warnings"]}


def test_artifacts_keep_the_folder_verifiable(trust_models: Path) -> None:
    folder = trust_models / "cg-fe" / "1"
    manifest = cg.read_manifest(folder)
    cg.verify_manifest(folder, manifest)
    assert cg.verify_file(folder, manifest, "uncertainty").stat().st_size < 2 * 2**20
    cg.EmbeddingUncertainty.load(folder / "uncertainty.npz")


def test_sigma_on_every_prediction_and_alternative(trust_client: httpx.Client) -> None:
    nacl = _cif(_rocksalt("Na", "Cl", 5.64))
    r = trust_client.post("/v1/predict", files={"file": ("nacl.cif", nacl)}, params={"models": "cg-fe,sr-fe,mt-bg"})
    assert r.status_code == 200, r.text
    body = r.json()
    fe, bg = body["predictions"]["formation_energy_per_atom"], body["predictions"]["band_gap"]
    assert fe["sigma"] is not None and 0.05 <= fe["sigma"] <= 0.5
    assert bg["sigma"] is not None and bg["p_metal"] is not None
    (alt,) = body["alternatives"]["formation_energy_per_atom"]
    assert alt["model"] == "sr-fe" and alt["sigma"] is not None
    assert set(body["provenance"]) == {"cg-fe@1", "sr-fe@1", "mt-bg@1"}
    assert not _codes(body) & {"out_of_domain", "too_many_atoms", "density_out_of_range"}, body["warnings"]


def test_models_endpoint_says_which_models_have_sigma(trust_client: httpx.Client) -> None:
    models = {m["ref"]: m for m in trust_client.get("/v1/models").json()["models"]}
    info = models["cg-fe@1"]["uncertainty"]
    assert info["method"] == "embedding_distance" and info["how"] and info["max_atoms"] > 0
    assert models["cg-fe@1"]["properties"][0]["sigma"] is True
    # the figures of the sigma answers carry by default, and apart those of ?uncertainty=ensemble
    fe = "formation_energy_per_atom"
    assert info["calibration"][fe]["val"]["within_1_sigma"] == 0.68
    assert info["calibration_ensemble"][fe]["val"]["within_1_sigma"] == 0.7
    alone = models["mt-bg@1"]["uncertainty"]
    assert alone["calibration"]["band_gap"]["val"]["within_1_sigma"] == 0.68 and alone["calibration_ensemble"] == {}


def test_element_never_in_training_and_rare_element(trust_client: httpx.Client) -> None:
    # XeF2-like noble-gas compound: Xe is not in training
    xef2 = Structure(Lattice.tetragonal(4.32, 6.99), ["Xe", "F", "F"], [[0, 0, 0], [0, 0, 0.285], [0, 0, 0.715]])
    r = trust_client.post("/v1/predict", files={"file": ("xef2.cif", _cif(xef2))})
    assert r.status_code == 200, r.text
    assert "element_not_in_training_set" in _codes(r.json())
    r = trust_client.post("/v1/predict", files={"file": ("cscl.cif", _cif(_training_like()[-1]))})
    assert r.status_code == 200
    rare = [w for w in r.json()["warnings"] if w["code"] == "element_rare_in_training_set"]
    assert rare and "Cs" in rare[0]["detail"]


def test_400_atom_cell_is_answered_with_a_warning(trust_client: httpx.Client) -> None:
    big = _rocksalt("Na", "Cl", 5.64)  # conventional cell: 8 atoms
    big.make_supercell([5, 5, 2])
    assert len(big) == 400
    r = trust_client.post("/v1/predict", files={"file": ("big.cif", _cif(big))})
    assert r.status_code == 200, r.text
    assert "too_many_atoms" in _codes(r.json())
    assert r.json()["predictions"]["formation_energy_per_atom"]["sigma"] is not None


def test_low_density_framework_is_flagged_not_refused(trust_client: httpx.Client) -> None:
    # an open Si-O framework: cristobalite-like positions in a cell blown up to ~0.3 g/cm³
    frame = Structure(
        Lattice.cubic(14.0),
        ["Si", "Si", "O", "O", "O", "O"],
        [[0, 0, 0], [0.25, 0.25, 0.25], [0.125, 0.125, 0.125], [0.125, 0.375, 0.375],
         [0.375, 0.125, 0.375], [0.375, 0.375, 0.125]],
    )  # fmt: skip
    r = trust_client.post("/v1/predict", files={"file": ("frame.cif", _cif(frame))})
    assert r.status_code == 200, r.text
    codes = _codes(r.json())
    assert "density_out_of_range" in codes
    assert "out_of_domain" in codes  # far from every training embedding, answered all the same
    assert r.json()["predictions"]["formation_energy_per_atom"]["value"] is not None


def test_sigma_and_provenance_in_batch_and_ndjson(trust_client: httpx.Client) -> None:
    files = [
        ("files", ("a.cif", _cif(_rocksalt("Na", "Cl", 5.64)))),
        ("files", ("b.cif", _cif(_rocksalt("K", "Br", 6.6)))),
    ]
    r = trust_client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    for item in r.json()["results"]:
        assert all(p["sigma"] is not None for p in item["predictions"].values())
        assert item["provenance"]
    r = trust_client.post("/v1/predict/batch", files=files, headers={"Accept": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    items = [x for x in lines if "predictions" in x]
    assert len(items) == 2
    for item in items:
        assert all(p["sigma"] is not None for p in item["predictions"].values()) and item["provenance"]


def _wait(client: httpx.Client, job: str) -> dict:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job} did not finish")


def test_job_csv_and_ndjson_carry_sigma_alternatives_and_provenance(trust_client: httpx.Client) -> None:
    files = [
        ("files", ("a.cif", _cif(_rocksalt("Na", "Cl", 5.64)))),
        ("files", ("b.cif", _cif(_rocksalt("Li", "F", 4.03)))),
    ]
    r = trust_client.post("/v1/jobs", files=files, params={"models": "cg-fe,sr-fe,mt-bg"})
    assert r.status_code == 202, r.text
    status = _wait(trust_client, r.json()["id"])
    assert status["state"] == "done", status
    text = trust_client.get(status["links"]["results"], params={"format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2
    for row in rows:
        assert float(row["formation_energy_per_atom_sigma"]) > 0
        assert float(row["band_gap_sigma"]) > 0 and row["band_gap_p_metal"] != ""
        assert row["formation_energy_per_atom_model"] == "cg-fe@1"
        assert len(row["formation_energy_per_atom_weights_sha256"]) == 64
        assert row["formation_energy_per_atom_training_set"] == "fp-test"
        assert row["formation_energy_per_atom_graph"]
        # the second model named for one property keeps its value (issue 15 item 1)
        assert (
            row["formation_energy_per_atom@sr-fe@1"] != "" and float(row["formation_energy_per_atom@sr-fe@1_sigma"]) > 0
        )
        assert "warnings" in row
    items = [json.loads(line) for line in trust_client.get(status["links"]["results"]).text.splitlines()]
    for item in items:
        assert item["predictions"]["band_gap"]["sigma"] is not None
        assert item["alternatives"]["formation_energy_per_atom"][0]["sigma"] is not None
        assert "cg-fe@1" in item["provenance"]


def test_client_cli_result_files_and_output_carry_sigma(trust_client: httpx.Client, tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "crystal-predict"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "nacl.cif").write_text(_cif(_rocksalt("Na", "Cl", 5.64)))
    url = str(trust_client.base_url)
    for out in (tmp_path / "r.csv", tmp_path / "r.ndjson"):
        done = subprocess.run(
            [str(cli), "screen", str(folder), "--url", url, "--out", str(out), "--poll", "0.1"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    (row,) = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert float(row["band_gap_sigma"]) > 0 and len(row["band_gap_weights_sha256"]) == 64
    (item,) = [json.loads(line) for line in (tmp_path / "r.ndjson").read_text().splitlines()]
    assert item["predictions"]["formation_energy_per_atom"]["sigma"] > 0 and item["provenance"]
    shown = subprocess.run(
        [str(cli), "predict", str(folder / "nacl.cif"), "--url", url], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "±" in shown.stdout


def test_the_offline_predictor_gives_the_same_sigma_and_domain_warnings(
    trust_models: Path, trust_client: httpx.Client
) -> None:
    predictor = cg.Predictor(trust_models, models=["cg-fe", "sr-fe", "mt-bg"])
    xef2 = Structure(Lattice.tetragonal(4.32, 6.99), ["Xe", "F", "F"], [[0, 0, 0], [0, 0, 0.285], [0, 0, 0.715]])
    big = _rocksalt("Na", "Cl", 5.64)
    big.make_supercell([5, 5, 2])
    for name, structure in {"nacl": _rocksalt("Na", "Cl", 5.64), "xef2": xef2, "big": big}.items():
        http = trust_client.post(
            "/v1/predict", files={"file": (f"{name}.cif", _cif(structure))}, params={"models": "cg-fe,sr-fe,mt-bg"}
        ).json()
        offline = predictor.predict(structure).to_dict()
        pairs = [(p, offline["predictions"][p], http["predictions"][p]) for p in http["predictions"]]
        for p, theirs in http["alternatives"].items():
            pairs += [(p, a, b) for a, b in zip(offline["alternatives"][p], theirs, strict=True)]
        for prop, mine, theirs in pairs:
            assert theirs["sigma"] is not None, (name, prop)
            assert mine["sigma"] is not None and abs(mine["sigma"] - theirs["sigma"]) <= 1e-5, (
                name,
                prop,
                mine,
                theirs,
            )
        assert [w["code"] for w in offline["warnings"]] == [w["code"] for w in http["warnings"]], name
