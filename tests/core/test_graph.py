from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from crystalgraph import (
    Crystal,
    DisorderedStructureError,
    EmptyStructureError,
    GraphConfig,
    InvalidCIFError,
    IsolatedAtomError,
    OverlappingAtomsError,
    StructureError,
    UnsupportedElementError,
    cif_to_graphs,
    collate,
    crystal_graph,
    element_feature_table,
    feature_hash,
    parse_cif,
    read_structures,
    structure_to_graph,
)
from crystalgraph.features import FEATURE_BLOCKS


def test_rock_salt_has_six_nearest_neighbours_at_half_a(nacl):
    g = structure_to_graph(nacl)
    assert g.num_nodes == 8
    assert g.edge_index.shape == (2, 8 * 12)
    for i in range(8):
        d = g.edge_dist[g.edge_index[1] == i]
        assert torch.allclose(d[:6], torch.full((6,), 5.64 / 2), atol=1e-5)
        assert torch.allclose(d[6:12], torch.full((6,), 5.64 / 2**0.5), atol=1e-5)
        # nearest neighbours of Na are Cl and vice versa
        nbr = g.edge_index[0][g.edge_index[1] == i][:6]
        assert set(g.z[nbr].tolist()) == {17 if g.z[i] == 11 else 11}


def test_one_atom_cell_links_to_its_periodic_images(cu_primitive):
    g = structure_to_graph(cu_primitive)
    assert g.num_nodes == 1
    assert g.edge_index.shape == (2, 12)
    assert (g.edge_index == 0).all()
    assert torch.allclose(g.edge_dist, torch.full((12,), 3.61 / 2**0.5), atol=1e-5)


def _brute_force(structure: Structure, cutoff: float, k: int) -> list[np.ndarray]:
    lat = structure.lattice.matrix
    inv_heights = np.linalg.norm(np.linalg.inv(lat), axis=0)  # 1 / plane spacing along each axis
    n = [int(np.ceil(cutoff * h)) + 1 for h in inv_heights]
    cart = structure.cart_coords
    out = []
    for i in range(len(structure)):
        ds = []
        for shift in itertools.product(*(range(-m, m + 1) for m in n)):
            images = cart + np.asarray(shift) @ lat
            d = np.linalg.norm(images - cart[i], axis=1)
            ds.extend(d[(d > 1e-8) & (d <= cutoff)])
        out.append(np.sort(ds)[:k])
    return out


def test_triclinic_neighbours_match_brute_force_supercell_enumeration(triclinic):
    config = GraphConfig(cutoff=6.0, max_neighbors=12)
    g = structure_to_graph(triclinic, config)
    expected = _brute_force(triclinic, 6.0, 12)
    for i, ref in enumerate(expected):
        got = g.edge_dist[g.edge_index[1] == i].double().numpy()
        np.testing.assert_allclose(np.sort(got), ref, atol=1e-5)


def test_fewer_neighbours_than_max_inside_a_small_cutoff(nacl):
    g = structure_to_graph(nacl, GraphConfig(cutoff=3.0))
    assert g.edge_index.shape[1] == 8 * 6


def test_graph_is_deterministic_and_independent_of_site_order(perovskite):
    a, b = structure_to_graph(perovskite), structure_to_graph(perovskite)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_dist, b.edge_dist)
    shuffled = Structure.from_sites([perovskite[i] for i in (4, 2, 0, 3, 1)])
    c = structure_to_graph(shuffled)
    for old, new in zip((0, 1, 2, 3, 4), (2, 4, 1, 3, 0), strict=True):
        assert torch.allclose(a.edge_dist[a.edge_index[1] == old], c.edge_dist[c.edge_index[1] == new])


def test_cif_round_trip_and_multiple_blocks(nacl, perovskite):
    text = str(CifWriter(nacl)) + "\n" + str(CifWriter(perovskite))
    graphs = cif_to_graphs(text)
    assert [g.num_nodes for _, g in graphs] == [8, 5]
    assert len({name for name, _ in graphs}) == 2


@pytest.mark.parametrize("data", [b"", b"   \n", b"\x00\x01\x02binary", "just some text", "data_x\n_cell_length_a 3\n"])
def test_unparseable_input_is_invalid_cif(data):
    with pytest.raises(InvalidCIFError) as exc:
        parse_cif(data)
    assert exc.value.code == "invalid_cif"


def test_partial_occupancy_is_rejected():
    s = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(DisorderedStructureError, match="partial occupancy") as exc:
        structure_to_graph(s)
    assert exc.value.code == "disordered_structure"
    # and through CIF text too
    with pytest.raises(DisorderedStructureError):
        cif_to_graphs(str(CifWriter(s)))


def test_element_outside_the_table_is_rejected():
    s = Structure(Lattice.cubic(4.0), ["Md", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # Z = 101
    with pytest.raises(UnsupportedElementError, match="Md"):
        structure_to_graph(s)


def test_isolated_atom_is_rejected():
    s = Structure(Lattice.cubic(20.0), ["Na", "Cl", "Ar"], [[0, 0, 0], [0.12, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(IsolatedAtomError, match="Ar") as exc:
        structure_to_graph(s)
    assert exc.value.code == "isolated_atom"


def test_overlapping_atoms_are_rejected():
    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(OverlappingAtomsError, match="0.200 Å"):
        structure_to_graph(s)


def test_empty_structure_is_rejected():
    with pytest.raises(EmptyStructureError):
        structure_to_graph(Structure(Lattice.cubic(4.0), [], []))


def test_collate_offsets_node_indices(nacl, cu_primitive):
    b = collate([structure_to_graph(cu_primitive), structure_to_graph(nacl)])
    assert b.num_atoms.tolist() == [1, 8] and b.z.shape == (9,)
    assert b.edge_index[:, 12:].min() == 1  # NaCl's edges point at nodes 1..8
    assert b.batch.tolist() == [0] + [1] * 8


def test_feature_table_is_deterministic_and_documented():
    t = element_feature_table()
    assert t.shape == (101, 93)
    assert not t[0].any()
    assert set(np.unique(t)) <= {0.0, 1.0}
    offsets = dict(zip([n for n, _ in FEATURE_BLOCKS], np.cumsum([0] + [w for _, w in FEATURE_BLOCKS]), strict=False))
    assert sum(w for _, w in FEATURE_BLOCKS) == t.shape[1]
    # every element has exactly one group, period, valence and block bin
    for name in ("group", "period", "valence_electrons", "block"):
        width = dict(FEATURE_BLOCKS)[name]
        assert (t[1:, offsets[name] : offsets[name] + width].sum(axis=1) == 1).all(), name
    # Fe: group 8, period 4, d block
    fe = t[26]
    assert fe[offsets["group"] + 7] == 1 and fe[offsets["period"] + 3] == 1 and fe[offsets["block"] + 2] == 1
    assert len({tuple(row) for row in t[1:]}) > 90  # elements are distinguishable
    assert feature_hash() == feature_hash() and len(feature_hash()) == 16
    assert GraphConfig().feature_hash == feature_hash()
    assert GraphConfig().num_gaussians == 41


def test_the_array_path_gives_the_structure_paths_graph(nacl, triclinic, perovskite, cu_primitive):
    for structure in (nacl, triclinic, perovskite, cu_primitive):
        [block] = read_structures(str(CifWriter(structure)))
        assert isinstance(block.value, Crystal)  # the gemmi reader builds no Structure ...
        fast = crystal_graph(block.value)
        slow = structure_to_graph(block.structure)  # ... until one is asked for
        assert np.array_equal(fast.z, slow.z.numpy())
        assert np.array_equal(fast.edge_index, slow.edge_index.numpy())
        assert np.array_equal(fast.edge_dist, slow.edge_dist.numpy())
        back = Crystal.from_structure(block.structure)  # and any Structure converts back
        assert np.array_equal(crystal_graph(back).edge_index, fast.edge_index)
    triclinic_graph = crystal_graph(Crystal.from_structure(triclinic), GraphConfig(cutoff=6.0))
    for i, ref in enumerate(_brute_force(triclinic, 6.0, 12)):
        got = triclinic_graph.edge_dist[triclinic_graph.edge_index[1] == i].astype(np.float64)
        np.testing.assert_allclose(np.sort(got), ref, atol=1e-5)


def test_the_array_path_refuses_what_the_structure_path_refuses():
    cases = {
        "disordered": Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "overlapping": Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]),
        "isolated": Structure(Lattice.cubic(20.0), ["Na", "Cl", "Ar"], [[0, 0, 0], [0.12, 0, 0], [0.5, 0.5, 0.5]]),
        "unsupported": Structure(Lattice.cubic(4.0), ["Md", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    }
    for name, structure in cases.items():
        with pytest.raises(StructureError) as slow:
            structure_to_graph(structure)
        with pytest.raises(StructureError) as fast:
            crystal_graph(Crystal.from_structure(structure))
        assert fast.value.code == slow.value.code, name
