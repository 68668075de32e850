"""The reader's and neighbour list's fast paths equal the plain algorithms they replace.

Each fast path (column reading, the one-element species order, the all-sites orbit test, the
cell-wide merge test, the packed sort key of the neighbour list) is checked against the
straightforward code on inputs built to hit its edge cases: ties, special positions, rows listed
twice, mixed sites, values with uncertainties or nulls.
"""

from __future__ import annotations

import gemmi
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgraph import GraphConfig, crystal_graph, read_structures
from crystalgraph._cif import _groups, _numbers, _runs
from crystalgraph._cif_checks import number
from crystalgraph._neighbors import ROUND, _order, _search, nearest
from crystalgraph._symmetry import SITE_TOLERANCE, images, merge_orbits, orbits_of, resolve_symmetry
from crystalgraph.crystal import Crystal


def _orbits_one_site_at_a_time(site_images: np.ndarray) -> list[np.ndarray]:
    """The first-kept walk, site by site (the code ``orbits_of`` replaced)."""
    out = []
    for points in site_images:
        diff = points[:, None, :] - points[None, :, :]
        same = np.all(np.abs(diff - np.round(diff)) < SITE_TOLERANCE, axis=-1)
        alive = np.ones(len(points), dtype=bool)
        kept = []
        for k in range(len(points)):
            if alive[k]:
                kept.append(k)
                alive &= ~same[k]
        out.append(points[kept])
    return out


def _block(text: str) -> gemmi.cif.Block:
    return gemmi.cif.read_string(text).sole_block()


@pytest.mark.parametrize("group", ["F m -3 m", "P 63/m m c", "I a -3 d", "P 1"])
def test_orbits_of_all_sites_equals_the_site_by_site_walk(group: str) -> None:
    sym = resolve_symmetry(_block(f"data_x\n_symmetry_space_group_name_H-M '{group}'\n"))
    rng = np.random.default_rng(0)
    # general positions, special positions (0, 1/2, 1/4, 1/3), and a point off by less than the tolerance
    coords = np.vstack(
        [
            rng.random((5, 3)),
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [1 / 3, 2 / 3, 0.25], [0.5, 0, 0]],
            [[0.5 + 3e-5, 0.5, 0.0], [0.125, 0.125, 0.125]],
        ]
    )
    got, expected = orbits_of(images(sym, coords)), _orbits_one_site_at_a_time(images(sym, coords))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


def _pymatgen_order(site_species: list[dict[str, float]]) -> list[tuple[list[int], dict[str, float]]]:
    groups = _groups(site_species)  # the Composition-order keys, sorted one comparison at a time
    order = sorted(range(len(groups)), key=lambda i: groups[i])
    runs: list[tuple[list[int], dict[str, float]]] = []
    for i in order:
        if runs and groups[runs[-1][0][0]] == groups[i]:
            runs[-1][0].append(i)
        else:
            runs.append(([i], groups[i].species))
    return runs


@pytest.mark.parametrize(
    "species",
    [
        [{"O": 1.0}, {"Na": 1.0}, {"Cl": 1.0}, {"O": 1.0}, {"Na": 1.0}],
        [{"He": 1.0}, {"Ne": 1.0}, {"Ar": 1.0}, {"Fe": 1.0}],  # no electronegativity: by symbol
        [{"Fe": 1.0}, {"Fe": 0.5}, {"O": 1.0}, {"Fe": 1.0}],  # one element, two amounts
        [{"Fe": 0.5, "Ni": 0.5}, {"O": 1.0}, {"Fe": 1.0}],  # a mixed site
        [{"Cu": 1.0}],
    ],
)
def test_species_groups_in_pymatgens_order(species: list[dict[str, float]]) -> None:
    assert _runs([dict(s) for s in species]) == _pymatgen_order([dict(s) for s in species])


def test_a_column_of_numbers_reads_as_each_value_would() -> None:
    values = ["0.5", "-.25", "1e-3", "0.123(4)", "'0.75'", "?", ".", "2.", "0.33333333333333333333"]
    block = _block("data_x\nloop_\n_v\n" + "\n".join(values) + "\n")
    column = block.find_values("_v")
    got = _numbers(column)
    expected = np.array([number(v) for v in column])
    assert np.array_equal(got, expected, equal_nan=True)
    plain = _block("data_x\nloop_\n_v\n0.1\n0.7\n1e2\n").find_values("_v")
    assert _numbers(plain).tolist() == [0.1, 0.7, 100.0]


def test_sites_listed_twice_under_the_symmetry_are_merged_once() -> None:
    # Na at 0 and again at (1/2, 1/2, 0), an F-centring image of it: merged group by group, with the notice
    text = (
        "data_x\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
        "_symmetry_space_group_name_H-M 'F m -3 m'\nloop_\n_atom_site_label\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\nNa1 0 0 0\nCl1 0.5 0.5 0.5\nNa2 0.5 0.5 0.0\n"
    )
    [block] = read_structures(text)
    assert block.crystal is not None and len(block.crystal) == 8
    assert "sites_merged" in [n.code for n in block.notices]


def _reference_select(lattice: np.ndarray, cart: np.ndarray, k: int, cutoff: float) -> tuple[np.ndarray, ...]:
    """One search at the cutoff, every pair sorted by ``lexsort`` on the fields (no packed key)."""
    center, neighbor, image, dist = _search(lattice, cart, cutoff)
    order = np.lexsort((image[:, 2], image[:, 1], image[:, 0], neighbor, np.round(dist, ROUND), center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    counts = np.bincount(center, minlength=len(cart))
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    keep = np.arange(len(center)) - np.repeat(first, counts) < k
    return center[keep], neighbor[keep], dist[keep]


def test_packed_sort_key_orders_pairs_as_lexsort_does() -> None:
    rng = np.random.default_rng(1)
    n = 7
    center = rng.integers(0, n, 500)
    neighbor = rng.integers(0, n, 500)
    image = rng.integers(-3, 4, (500, 3))
    dist = np.round(rng.random(500) * 3, 2) + rng.choice([0.0, 1e-9, 4e-7, 6e-7], 500)  # ties, and ties after rounding
    expected = np.lexsort((image[:, 2], image[:, 1], image[:, 0], neighbor, np.round(dist, ROUND), center))
    got = _order(n, center, neighbor, image, dist)
    keys = np.stack([center, np.round(dist, ROUND), neighbor, *image.T], axis=1)
    assert np.array_equal(keys[got], keys[expected])


@pytest.mark.parametrize(
    "structure",
    [
        Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]]),  # every shell a tie
        Structure(
            Lattice.cubic(5.64),
            ["Na"] * 4 + ["Cl"] * 4,
            [
                [0, 0, 0],
                [0.5, 0.5, 0],
                [0.5, 0, 0.5],
                [0, 0.5, 0.5],
                [0.5, 0, 0],
                [0, 0.5, 0],
                [0, 0, 0.5],
                [0.5, 0.5, 0.5],
            ],
        ),
        Structure(
            Lattice.from_parameters(3.1, 4.7, 5.3, 71, 83, 102),
            ["Si", "O", "O"],
            [[0.1, 0.2, 0.3], [0.6, 0.5, 0.1], [0.3, 0.9, 0.7]],
        ),
        Structure(
            Lattice.hexagonal(2.5, 6.7),
            ["C"] * 4,
            [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
        ),
    ],
    ids=["cu", "nacl", "triclinic", "graphite"],
)
def test_two_radius_search_with_packed_key_equals_one_search_sorted_by_lexsort(structure: Structure) -> None:
    config = GraphConfig()
    crystal = Crystal.from_structure(structure)
    center, neighbor, dist, *_ = nearest(crystal.lattice, crystal.cart, config.max_neighbors, config.cutoff, 0.5)
    ref = _reference_select(crystal.lattice, crystal.cart, config.max_neighbors, config.cutoff)
    assert all(np.array_equal(a, b) for a, b in zip((center, neighbor, dist), ref, strict=True))
    graph = crystal_graph(crystal, config)
    assert np.array_equal(graph.edge_index, np.stack([ref[1], ref[0]]))


def test_merge_orbits_keeps_the_first_image_of_a_repeated_point() -> None:
    a = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    b = np.array([[0.5, 0.5, 1.0 - 1e-6], [0.25, 0.25, 0.25]])
    points, owners = merge_orbits([a, b])
    assert points.tolist() == [*a.tolist(), [0.25, 0.25, 0.25]] and owners == [0, 0, 1]


def test_two_rows_at_one_position_inside_a_p1_cell_are_one_site() -> None:
    # the identity alone, every coordinate in [0, 1): the row test is also the cell-wide test
    text = (
        "data_x\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
        "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n"
        "loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "Na1 0 0 0\nCl1 0.5 0.5 0.5\nBr1 0.5 0.5 0.50002\n"
    )
    [block] = read_structures(text)
    assert block.crystal is not None and len(block.crystal) == 2
    assert sorted(block.crystal.species, key=len) == [{"Na": 1.0}, {"Cl": 0.5, "Br": 0.5}]  # scaled to a total of 1
    assert "sites_merged" in [n.code for n in block.notices]


def test_listed_operations_are_cached_read_only_and_long_lists_still_read() -> None:
    ops = "loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n'-x, -y, -z'\n"
    sym = resolve_symmetry(_block(f"data_x\n{ops}"))
    assert sym.n_ops == 2 and resolve_symmetry(_block(f"data_y\n{ops}")).rotations is sym.rotations
    with pytest.raises(ValueError):
        sym.rotations[0, 0, 0] = 2.0
    many = "loop_\n_symmetry_equiv_pos_as_xyz\n" + "'x, y, z'\n" * 300
    assert resolve_symmetry(_block(f"data_z\n{many}")).n_ops == 300
