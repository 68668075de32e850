"""Bit-identical float32 answers alone and in random batches: the shipped models, both backends.

The torch backend pads its batches for it (:mod:`service.backends._padding`); onnxruntime holds
it on one intra-op thread, the service's default (``CRYSTAL_TORCH_THREADS=1``). The test runs
the real predictors of the model repository on crystals built in code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgraph import GraphArrays, GraphConfig, collate, structure_to_graph
from service.backends import create_predictor
from service.featurize import featurize
from service.warmup import warmup_cifs

SHIPPED = Path(__file__).resolve().parents[2] / "models"


def _crystals() -> list[Structure]:
    rng = np.random.default_rng(7)
    out = []
    for n in range(12):  # rattled triclinic cells of 2 to 13 atoms
        lattice = Lattice.from_parameters(*(4 + rng.random(3) * 3), *(75 + rng.random(3) * 30))
        species = rng.choice(["Li", "O", "Fe", "Si", "Ba", "S", "Zn", "N"], size=n + 2).tolist()
        coords = rng.random((n + 2, 3))
        s = Structure(lattice, species, coords)
        if min(s.distance_matrix[np.triu_indices(len(s), 1)]) > 1.0:
            out.append(s)
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    out.append(nacl * (2, 2, 1))  # 32 atoms
    return out


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """The service's default: one intra-op thread (both backends take torch's setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def graphs() -> list[GraphArrays]:
    config = GraphConfig()
    built = [featurize(c.encode(), [config], 500)[0].graphs[config.fingerprint] for c in warmup_cifs()]
    built += [GraphArrays.from_data(structure_to_graph(s, config)) for s in _crystals()]
    assert len(built) >= 12
    return built


def _shipped() -> list[Path]:
    folders = []
    for model in sorted(SHIPPED.iterdir()):
        versions = sorted((p for p in model.glob("*/manifest.json")), key=lambda p: int(p.parent.name))
        if versions:
            folders.append(versions[-1].parent)
    return folders


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("folder", _shipped(), ids=lambda f: f"{f.parent.name}@{f.name}")
def test_a_crystal_gets_the_same_float32_answer_alone_and_in_any_batch(
    folder: Path, backend: str, graphs: list[GraphArrays]
) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    predictor = create_predictor(backend, folder, manifest, "cpu", "float32")
    alone = [predictor.predict(collate([g]))[0] for g in graphs]
    rng = random.Random(folder.parent.name + backend)
    compared = 0
    for _ in range(25):
        picked = [rng.randrange(len(graphs)) for _ in range(rng.randint(2, 48))]
        out = predictor.predict(collate([graphs[i] for i in picked]))
        for i, row in zip(picked, out, strict=True):
            assert np.array_equal(row, alone[i]), (i, row, alone[i])
            compared += 1
    assert compared > 300


def test_shipped_models_are_found() -> None:
    assert len(_shipped()) >= 4
