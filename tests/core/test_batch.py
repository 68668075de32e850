"""The graph interchange format: ``collate`` gives torch-geometric's batch tensors, packing gives ``collate``'s."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from crystalgraph import (
    KNOWN_TARGETS,
    CGCNNConfig,
    GraphArrays,
    ModelInputs,
    PackedGraphs,
    TargetSpec,
    build_model,
    collate,
    structure_to_graph,
)


def _graphs():
    out = []
    for i, (a, b) in enumerate([("Na", "Cl"), ("Mg", "O"), ("Cs", "Cl"), ("Li", "F"), ("K", "Br")]):
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.0 + 0.3 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        out.append(structure_to_graph(s))
    out.append(structure_to_graph(Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])))  # one atom
    return out


def _assert_identical(got: ModelInputs, want: ModelInputs) -> None:
    assert isinstance(got, ModelInputs) and got._fields == ("z", "edge_index", "edge_dist", "batch", "num_atoms")
    for name, a, b in zip(got._fields, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), name


def _pyg(graphs) -> ModelInputs:
    """What the model was fed before: torch-geometric's ``Batch.from_data_list``, ``ptr.diff()`` as counts."""
    b = Batch.from_data_list(list(graphs))
    return ModelInputs(b.z, b.edge_index, b.edge_dist, b.batch, b.ptr.diff())


@pytest.mark.parametrize("idx", [[0], [5], [3, 1, 4], [5, 0, 2, 2, 1], [1, 5, 5, 0]])
def test_collate_equals_torch_geometric_batches(idx):
    graphs = [_graphs()[i] for i in idx]
    expected = _pyg(graphs)
    assert expected.edge_dist.dtype == torch.float32 and expected.num_atoms.dtype == torch.int64
    _assert_identical(collate(graphs), expected)
    _assert_identical(collate([GraphArrays.from_data(g) for g in graphs]), expected)
    mixed = [GraphArrays.from_data(g) if k % 2 else g for k, g in enumerate(graphs)]
    _assert_identical(collate(mixed), expected)


def test_collate_offsets_node_indices_and_copies():
    graphs = _graphs()
    one_atom, nacl = GraphArrays.from_data(graphs[5]), GraphArrays.from_data(graphs[0])
    z_before = nacl.z.copy()
    inputs = collate([one_atom, nacl])
    assert inputs.num_atoms.tolist() == [1, 8] and inputs.batch.tolist() == [0] + [1] * 8
    n_first = one_atom.edge_dist.shape[0]
    assert inputs.edge_index[:, :n_first].max() == 0 and inputs.edge_index[:, n_first:].min() == 1
    inputs.edge_index.add_(100)  # the batch owns its tensors: the graph's arrays are untouched
    inputs.z.zero_()
    assert one_atom.edge_index.max() == 0 and np.array_equal(nacl.z, z_before)
    empty = collate([])
    assert [t.shape for t in empty] == [(0,), (2, 0), (0,), (0,), (0,)]


def test_graph_arrays_round_trip_through_data():
    g = _graphs()[1]
    arrays = GraphArrays.from_data(g)
    assert arrays.num_atoms == g.num_nodes == 8
    back = arrays.to_data()
    assert back.num_nodes == 8
    for key in ("z", "edge_index", "edge_dist"):
        assert torch.equal(back[key], g[key])


@pytest.mark.parametrize("idx", [[0], [5], [3, 1, 4], [5, 0, 2, 2, 1]])
def test_packed_batches_equal_collated_batches(idx):
    graphs = _graphs()
    labels = np.arange(len(graphs) * 2, dtype=np.float32).reshape(-1, 2)
    inputs, y = PackedGraphs(graphs, labels).batch(idx)
    _assert_identical(inputs, collate([graphs[i] for i in idx]))
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
