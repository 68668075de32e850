"""``examples/``: the hand-written CIFs the README's commands use, predicted by a live server."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from crystalgraph import NOTICE_CODES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXPECTED = {"NaCl.cif": ("NaCl", 8), "Si.cif": ("Si", 8), "Cu.cif": ("Cu", 4), "CoO-label-warning.cif": ("CoO", 8)}


def test_the_examples_folder_holds_the_four_cifs() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_example_is_predicted_with_only_the_reader_warnings_it_means(client: httpx.Client, name: str) -> None:
    path = EXAMPLES / name
    response = client.post("/v1/predict", files={"file": (name, path.read_bytes(), "chemical/x-cif")})
    assert response.status_code == 200, response.text
    answer = response.json()
    formula, n_sites = EXPECTED[name]
    assert (answer["structure"]["reduced_formula"], answer["structure"]["n_sites"]) == (formula, n_sites)
    assert set(answer["predictions"]) == {"formation_energy_per_atom", "band_gap"}
    reader = {w["code"] for w in answer["warnings"] if w["code"] in NOTICE_CODES}
    assert reader == ({"label_as_element"} if name.startswith("CoO") else set()), answer["warnings"]


def test_readme_commands_use_the_shipped_examples() -> None:
    readme = (ROOT / "README.md").read_text()
    assert not re.findall(r"(?<![/\w$`])(?:NaCl|Cu|Si)\.cif", readme), "a bare NaCl.cif is not shipped"
    used = set(re.findall(r"examples/[\w.-]+\.cif", readme))
    assert "examples/NaCl.cif" in used
    assert all((ROOT / p).is_file() for p in used), used
