"""The packed graph format gives exactly what per-batch collation gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgraph import (
    KNOWN_TARGETS,
    CGCNNConfig,
    PackedGraphs,
    TargetSpec,
    build_model,
    collate,
    model_inputs,
    structure_to_graph,
)


def _graphs():
    out = []
    for i, (a, b) in enumerate([("Na", "Cl"), ("Mg", "O"), ("Cs", "Cl"), ("Li", "F"), ("K", "Br")]):
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.0 + 0.3 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        out.append(structure_to_graph(s))
    out.append(structure_to_graph(Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])))  # one atom
    return out


@pytest.mark.parametrize("idx", [[0], [5], [3, 1, 4], [5, 0, 2, 2, 1]])
def test_packed_batches_equal_collated_batches(idx):
    graphs = _graphs()
    labels = np.arange(len(graphs) * 2, dtype=np.float32).reshape(-1, 2)
    inputs, y = PackedGraphs(graphs, labels).batch(idx)
    expected = model_inputs(collate([graphs[i] for i in idx]))
    assert inputs._fields == ("z", "edge_index", "edge_dist", "batch", "num_atoms")
    for got, want in zip(inputs, expected, strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert torch.equal(y, torch.as_tensor(labels[idx]))


def test_metal_head_gates_the_band_gap():
    targets = (KNOWN_TARGETS["band_gap"], KNOWN_TARGETS["p_metal"])
    model = build_model(CGCNNConfig(targets=targets)).eval()
    assert model.gates == [(0, 1)]
    out = torch.tensor([[1.0, 3.0], [1.0, -3.0], [-5.0, 0.0]])  # normalised gap, logit
    y = model.denormalize(out)
    torch.testing.assert_close(y[:, 1], torch.sigmoid(out[:, 1]))
    assert y[0, 0] == 0  # p = 0.95 > 0.5: a metal
    assert y[1, 0] == pytest.approx(1.0) and y[2, 0] == 0  # a gap; clipped at 0
    model.metal_threshold.fill_(0.99)
    assert model.denormalize(out)[0, 0] == pytest.approx(1.0)
    assert "metal_threshold" in model.state_dict()


def test_a_probability_target_needs_its_source():
    with pytest.raises(ValueError, match="gates"):
        CGCNNConfig(targets=(KNOWN_TARGETS["p_metal"],))
    with pytest.raises(ValueError, match="source"):
        TargetSpec(name="p", unit="1", kind="metal_probability")
