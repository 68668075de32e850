"""Reader warnings reach every answer (single, batch, NDJSON); ``strict`` turns them into 422s; formats.

Against the live test server, with the hand-made trap CIFs of ``tests/conftest.py``.
"""

from __future__ import annotations

import json

import httpx
import pytest
from pymatgen.core import Structure
from pymatgen.io.vasp import Poscar

from crystalgraph import read_structures

TRAPS = {
    "co_labels": "label_as_element",
    "dropped_site": "sites_dropped",
    "unknown_group": "symmetry_fallback",
    "composition": "composition_mismatch",
}


def _codes(answer: dict) -> list[str]:
    return [w["code"] for w in answer["warnings"]]


@pytest.mark.parametrize(("trap", "code"), TRAPS.items())
def test_a_warning_reaches_the_answer_and_strict_refuses_it(
    client: httpx.Client, trap_cifs: dict, trap: str, code: str
) -> None:
    files = {"file": (f"{trap}.cif", trap_cifs[trap])}
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    assert code in _codes(r.json()) and all(w["detail"] for w in r.json()["warnings"])
    r = client.post("/v1/predict", files=files, params={"strict": "true"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and "strict" in r.json()["detail"]


def test_hall_only_diamond_is_predicted_with_8_atoms(client: httpx.Client, trap_cifs: dict) -> None:
    r = client.post("/v1/predict", files={"file": ("diamond.cif", trap_cifs["hall_only"])}, params={"strict": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["structure"]["n_sites"] == 8
    assert {w["code"] for w in r.json()["warnings"]} <= {"element_not_in_training_set"}  # the test models saw no C


def test_strict_refuses_a_file_with_several_blocks(client: httpx.Client, cifs: dict) -> None:
    files = {"file": ("two.cif", cifs["two_blocks"])}
    assert _codes(client.post("/v1/predict", files=files).json()) == ["multiple_blocks"]
    r = client.post("/v1/predict", files=files, params={"strict": True})
    assert r.status_code == 422 and r.json()["code"] == "multiple_blocks"


def test_warnings_reach_batch_and_ndjson_results(client: httpx.Client, trap_cifs: dict, cifs: dict) -> None:
    files = [("files", (f"{t}.cif", trap_cifs[t])) for t in TRAPS] + [("files", ("nacl.cif", cifs["nacl"]))]
    body = client.post("/v1/predict/batch", files=files).json()
    by_name = {item["filename"]: item for item in body["results"]}
    for trap, code in TRAPS.items():
        assert by_name[f"{trap}.cif"]["ok"] and code in _codes(by_name[f"{trap}.cif"])
    assert by_name["nacl.cif"]["warnings"] == []
    lines = client.post("/v1/predict/batch", files=files, headers={"Accept": "application/x-ndjson"}).text
    streamed = {item["filename"]: item for item in map(json.loads, lines.splitlines())}
    assert {n: _codes(i) for n, i in streamed.items()} == {n: _codes(i) for n, i in by_name.items()}
    strict = client.post("/v1/predict/batch", files=files, params={"strict": "true"}).json()
    assert strict["n_failed"] == len(TRAPS) and strict["n_ok"] == 1
    errors = {i["filename"]: i["error"]["code"] for i in strict["results"] if not i["ok"]}
    assert errors == {f"{t}.cif": code for t, code in TRAPS.items()}


def test_hostile_cells_are_refused_promptly(client: httpx.Client) -> None:
    cell = "".join(f"_cell_length_{x} {v}\n" for x, v in zip("abc", ("-4", "4", "4"), strict=True))
    cell += "".join(f"_cell_angle_{x} 90\n" for x in ("alpha", "beta", "gamma"))
    sites = "".join(f"_atom_site_{c}\n" for c in ("label", "fract_x", "fract_y", "fract_z"))
    text = f"data_x\n{cell}loop_\n{sites}Cu1 0 0 0\n"
    r = client.post("/v1/predict", files={"file": ("neg.cif", text)})
    assert r.status_code == 422 and r.json()["code"] == "invalid_cell"
    r = client.post("/v1/predict", files={"file": ("flood.cif", "data_x" + "\n" * 200_000)}, timeout=30)
    assert r.status_code == 422 and r.json()["code"] == "invalid_cif"


def _predictions(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return {k: v["value"] for k, v in r.json()["predictions"].items()}


def test_every_format_gets_the_prediction_of_its_cif(client: httpx.Client, cifs: dict) -> None:
    [block] = read_structures(cifs["srtio3"])
    structure: Structure = block.structure
    expected = _predictions(client.post("/v1/predict", files={"file": ("x.cif", cifs["srtio3"])}))
    poscar = Poscar(structure).get_str()
    assert _predictions(client.post("/v1/predict", files={"file": ("POSCAR", poscar)})) == expected
    assert _predictions(client.post("/v1/predict", json={"structure": poscar, "format": "poscar"})) == expected
    assert _predictions(client.post("/v1/predict", json={"structure": structure.as_dict()})) == expected
    optimade = {
        "attributes": {
            "lattice_vectors": structure.lattice.matrix.tolist(),
            "cartesian_site_positions": structure.cart_coords.tolist(),
            "species_at_sites": [s.specie.symbol for s in structure],
        }
    }
    assert _predictions(client.post("/v1/predict", json={"structure": optimade, "format": "optimade-json"})) == expected
    lattice = " ".join(f"{x:.12f}" for x in structure.lattice.matrix.ravel())
    atoms = "".join(
        f"{s.specie} {x:.12f} {y:.12f} {z:.12f}\n"
        for s, (x, y, z) in zip(structure, structure.cart_coords, strict=True)
    )
    frame = f'{len(structure)}\nLattice="{lattice}" Properties=species:S:1:pos:R:3\n{atoms}'
    body = client.post("/v1/predict/batch", files=[("files", ("two.xyz", frame + frame))]).json()
    assert [i["filename"] for i in body["results"]] == ["two.xyz#frame1", "two.xyz#frame2"]
    assert all({k: v["value"] for k, v in i["predictions"].items()} == expected for i in body["results"])
    r = client.post("/v1/predict", files={"file": ("POSCAR", "not a poscar\n")})
    assert r.status_code == 422 and r.json()["code"] == "invalid_structure_file" and "poscar" in r.json()["detail"]


_BROKEN_BLOCK = (  # a row short of a value: gemmi refuses the whole file
    "data_broken\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\nloop_\n_atom_site_label\n"
    "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa1 0 0 0\nCl1 0.5 0.5\n"
)


def test_blocks_keep_their_names_and_a_broken_block_gets_its_own_row(client: httpx.Client, trap_cifs: dict) -> None:
    text = trap_cifs["clean"] + _BROKEN_BLOCK + trap_cifs["dotted_tag"]
    body = client.post("/v1/predict/batch", files=[("files", ("multi.cif", text))]).json()
    rows = {i["filename"]: i for i in body["results"]}
    assert list(rows) == ["multi.cif#NaCl", "multi.cif#broken", "multi.cif#Ni"]
    assert rows["multi.cif#NaCl"]["ok"] and rows["multi.cif#Ni"]["structure"]["n_sites"] == 4
    assert not rows["multi.cif#broken"]["ok"] and rows["multi.cif#broken"]["error"]["code"] == "invalid_cif"
    single = client.post("/v1/predict", files={"file": ("multi.cif", text)}).json()
    assert single["structure"]["block"] == "NaCl"
    assert "'broken'" in single["warnings"][0]["detail"]
