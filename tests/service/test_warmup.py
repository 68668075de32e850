"""The warm-up batch-invariance check, with real models and crystals built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crystalgraph import GraphArrays, GraphConfig, ModelInputs, collate, load_exported
from service.backends._padding import PAD_GRAPHS
from service.backends._torch import TorchPredictor
from service.featurize import featurize
from service.warmup import batch_invariant, warmup_cifs


@pytest.fixture(scope="module")
def graphs() -> list[GraphArrays]:
    config = GraphConfig()
    return [featurize(c.encode(), [config], 500)[0].graphs[config.fingerprint] for c in warmup_cifs()]


class _Unpadded:
    """The same model without the backend's padding: what the check exists to catch."""

    backend, device, provider, precision = "torch", "cpu", None, "float32"

    def __init__(self, folder: Path) -> None:
        self.model = load_exported(folder).model

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        with torch.inference_mode():
            return self.model.predict(*inputs).numpy()


def test_warmup_crystals_include_a_one_atom_cell(graphs: list[GraphArrays]) -> None:
    assert [g.num_atoms for g in graphs] == [8, 1, 2, 5, 3]


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_padded_torch_predictor_passes(models_dir: Path, graphs: list, precision: str) -> None:
    for folder in sorted(models_dir.glob("*/*/")):
        if folder.parent.name in {"tampered", "alien"}:
            continue
        assert batch_invariant(TorchPredictor.load(folder, {}, "cpu", precision), graphs), folder


def test_the_check_catches_float32_without_padding(models_dir: Path, graphs: list) -> None:
    folders = [models_dir / "cgcnn-formation-energy" / "1", models_dir / "cgcnn-multitask" / "1"]
    assert not all(batch_invariant(_Unpadded(f), graphs * 3) for f in folders)


def test_padding_does_not_change_the_answers(models_dir: Path, graphs: list) -> None:
    folder = models_dir / "cgcnn-multitask" / "1"
    padded = TorchPredictor.load(folder, {}, "cpu", "float32")
    data = collate(graphs)
    np.testing.assert_allclose(padded.predict(data), _Unpadded(folder).predict(data), rtol=1e-5, atol=1e-5)
    assert PAD_GRAPHS >= 4
