"""The structure reader: traps give the right structure or the right notice; hostile files fail fast."""

from __future__ import annotations

import io
import json
import time
import warnings

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser, CifWriter

from crystalgraph import (
    DisorderedStructureError,
    GraphConfig,
    InvalidCellError,
    InvalidCIFError,
    InvalidStructureFileError,
    OverlappingAtomsError,
    TooManyAtomsError,
    cif_to_graphs,
    detect_format,
    parse_cif,
    read_structures,
    structure_to_graph,
)


def _one(text: str | bytes, **kwargs: object):
    [block] = read_structures(text, **kwargs)
    return block


def _codes(block) -> list[str]:
    return [n.code for n in block.notices]


def _pymatgen(text: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CifParser(io.StringIO(text)).parse_structures(primitive=False, check_occu=False)[0]


# -- traps: the right structure, or a notice with the right code -------------------------------


@pytest.mark.parametrize("trap", ["hall_only", "annotated_hm"])
def test_diamond_from_a_hall_symbol_or_annotated_name_has_8_atoms(trap_cifs: dict, trap: str) -> None:
    block = _one(trap_cifs[trap])
    assert block.structure is not None and len(block.structure) == 8
    assert _codes(block) == []
    assert len(_pymatgen(trap_cifs[trap])) == 1  # what the old reader predicted


def test_space_group_in_a_dotted_tag_gives_fcc_nickel(trap_cifs: dict) -> None:
    block = _one(trap_cifs["dotted_tag"])
    assert block.structure is not None and block.structure.composition.formula == "Ni4"
    distances = block.structure.distance_matrix[0][1:]
    assert np.allclose(distances, 3.524 / np.sqrt(2))


def test_type_symbol_wins_over_a_label_naming_cobalt(trap_cifs: dict) -> None:
    block = _one(trap_cifs["co_labels"])
    assert block.structure is not None and block.structure.composition.formula == "C2 O2"
    assert _codes(block) == ["label_as_element", "label_as_element"]
    assert "CO1" in block.notices[0].detail and "Co" in block.notices[0].detail


def test_a_label_read_as_an_element_is_said(trap_cifs: dict) -> None:
    block = _one(trap_cifs["co_labels_no_type"])
    assert block.structure is not None and block.structure.composition.formula == "Co1 O1"
    assert _codes(block) == ["label_as_element"]


def test_a_dropped_site_is_said(trap_cifs: dict) -> None:
    block = _one(trap_cifs["dropped_site"])
    assert block.structure is not None and block.structure.composition.formula == "Na1 Cl1"
    assert _codes(block) == ["sites_dropped"] and "'Pt1'" in block.notices[0].detail


def test_an_unknown_space_group_read_as_p1_is_said(trap_cifs: dict) -> None:
    block = _one(trap_cifs["unknown_group"])
    assert block.structure is not None and len(block.structure) == 1
    assert _codes(block) == ["symmetry_fallback"] and "Q m 9 z" in block.notices[0].detail


def test_a_composition_that_disagrees_with_the_formula_is_said(trap_cifs: dict) -> None:
    block = _one(trap_cifs["composition"])
    assert _codes(block) == ["composition_mismatch"] and "Na Cl2" in block.notices[0].detail


def test_a_correct_symmetric_file_has_no_notice(trap_cifs: dict) -> None:
    block = _one(trap_cifs["clean"])
    assert block.structure is not None and block.structure.composition.formula == "Na4 Cl4"
    assert _codes(block) == []


def test_symmetry_equivalent_rows_are_merged_and_said() -> None:
    text = CifWriter(Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])).__str__()
    text = text.replace("_symmetry_space_group_name_H-M   'P 1'", "_symmetry_space_group_name_H-M   'P 1'")
    text += "  Na  Na9  1  0.00000000  0.00000000  1.00000000  1\n"  # the same Na again, one cell over
    block = _one(text)
    assert block.structure is not None and len(block.structure) == 2
    assert "sites_merged" in _codes(block)


def test_a_malformed_cif_falls_back_to_pymatgen_with_its_warnings() -> None:
    # a tag given twice: gemmi refuses the file, pymatgen reads it
    text = (
        "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_cell_length_a 4\nloop_\n_atom_site_label\n"
        "_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nCu1 Cu 0 0 0\n"
    )
    block = _one(text)
    assert block.structure is not None and block.structure.composition.formula == "Cu1"
    assert _codes(block)[0] == "fallback_parser" and "duplicate tag" in block.notices[0].detail
    assert "symmetry_fallback" in _codes(block)  # pymatgen's "Defaulting to P1", passed on
    # pymatgen cannot read it either: an error, never silence
    with pytest.raises(InvalidCIFError, match="malformed"):
        read_structures(text.replace("Cu1 Cu 0 0 0", "Cu1 Cu 0 0 0\nCu2 Cu 0.5 0.5"))


_BROKEN_BLOCK = (  # a row short of a value: gemmi refuses the whole file
    "data_broken\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\nloop_\n_atom_site_label\n"
    "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nNa1 0 0 0\nCl1 0.5 0.5\n"
)
_DUPLICATE_TAG_BLOCK = (  # a tag given twice: gemmi refuses it, pymatgen reads it
    "data_Cu\n_cell_length_a 3.61\n_cell_length_b 3.61\n_cell_length_c 3.61\n_cell_length_a 3.61\n"
    "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
    "_symmetry_space_group_name_H-M 'F m -3 m'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
    "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nCu1 Cu 0 0 0\n"
)


def test_a_broken_block_keeps_its_name_and_costs_only_itself(trap_cifs: dict) -> None:
    text = trap_cifs["clean"] + _BROKEN_BLOCK + _DUPLICATE_TAG_BLOCK + trap_cifs["dotted_tag"]
    blocks = read_structures(text)
    assert [b.name for b in blocks] == ["NaCl", "broken", "Cu", "Ni"]
    nacl, broken, cu, ni = blocks
    assert nacl.structure is not None and len(nacl.structure) == 8 and nacl.notices == ()
    assert broken.structure is None and broken.error is not None and broken.error.code == "invalid_cif"
    first = text[: text.index("data_broken")].count("\n") + 1
    line = int(str(broken.error).split("string:")[1].split(":")[0])
    assert first <= line <= first + _BROKEN_BLOCK.count("\n")  # the line in the whole file, not the block
    assert cu.structure is not None and cu.notices[0].code == "fallback_parser"
    assert ni.structure is not None and len(ni.structure) == 4


def test_a_file_of_one_broken_block_is_the_files_error() -> None:
    with pytest.raises(InvalidCIFError, match="malformed"):
        read_structures(_BROKEN_BLOCK)


# -- the same structures as pymatgen on ordinary files -----------------------------------------


def test_pymatgen_written_cifs_read_as_pymatgen_reads_them(nacl, triclinic, perovskite, cu_primitive) -> None:
    for structure in (nacl, triclinic, perovskite, cu_primitive):
        text = str(CifWriter(structure))
        ours, theirs = _one(text).structure, _pymatgen(text)
        assert [s.specie for s in ours] == [s.specie for s in theirs]
        assert np.abs(ours.cart_coords - theirs.cart_coords).max() < 1e-10
        assert np.allclose(ours.lattice.matrix, theirs.lattice.matrix)
        assert parse_cif(text)[0][1] == theirs


# -- formats: each gives the graph its CIF gives ------------------------------------------------


def _atoms(structure: Structure) -> list[tuple[int, tuple[float, ...]]]:
    """Each atom's element and neighbour distances, in a canonical order (the graph up to atom order)."""
    g = structure_to_graph(structure, GraphConfig())
    z, (_, center), dist = g.z.numpy(), g.edge_index.numpy(), g.edge_dist.numpy()
    return sorted((int(z[i]), tuple(np.round(np.sort(dist[center == i]), 4))) for i in range(len(z)))


def _same_graph(a: Structure, b: Structure) -> None:
    assert _atoms(a) == _atoms(b)


def test_poscar_extxyz_and_json_give_the_graph_of_the_cif(perovskite, triclinic) -> None:
    from pymatgen.io.vasp import Poscar

    reference = _one(str(CifWriter(perovskite))).structure
    poscar = Poscar(perovskite).get_str()
    assert detect_format(poscar) == "poscar" and detect_format("", "POSCAR") == "poscar"
    _same_graph(_one(poscar, filename="POSCAR").structure, reference)
    _same_graph(_one(poscar).structure, reference)  # found from the content
    _same_graph(_one(json.dumps(perovskite.as_dict())).structure, reference)
    optimade = {
        "data": {
            "id": "srtio3",
            "type": "structures",
            "attributes": {
                "lattice_vectors": perovskite.lattice.matrix.tolist(),
                "cartesian_site_positions": perovskite.cart_coords.tolist(),
                "species_at_sites": [s.specie.symbol for s in perovskite],
                "species": [{"name": e, "chemical_symbols": [e], "concentration": [1.0]} for e in ("Sr", "Ti", "O")],
            },
        }
    }
    block = _one(json.dumps(optimade), filename="srtio3.json")
    assert block.name == "srtio3"
    _same_graph(block.structure, reference)
    frames = []
    for s in (perovskite, triclinic):
        lattice = " ".join(f"{x:.10f}" for x in s.lattice.matrix.ravel())
        atoms = "".join(
            f"{site.specie} {x:.10f} {y:.10f} {z:.10f}\n" for site, (x, y, z) in zip(s, s.cart_coords, strict=True)
        )
        frames.append(f'{len(s)}\nLattice="{lattice}" Properties=species:S:1:pos:R:3 pbc="T T T"\n{atoms}')
    blocks = read_structures("".join(frames), filename="two.extxyz")
    assert [b.name for b in blocks] == ["frame1", "frame2"]
    _same_graph(blocks[0].structure, reference)
    _same_graph(blocks[1].structure, _one(str(CifWriter(triclinic))).structure)


def test_a_bad_file_of_another_format_names_its_format() -> None:
    with pytest.raises(InvalidStructureFileError, match="poscar"):
        read_structures("not a poscar\n1.0\n", filename="POSCAR")
    with pytest.raises(InvalidStructureFileError) as info:
        read_structures('{"lattice": 3}', filename="x.json")
    assert info.value.code == "invalid_structure_file"
    with pytest.raises(InvalidStructureFileError, match="Lattice"):
        read_structures("1\ncomment\nCu 0 0 0\n", filename="x.xyz")


# -- hostile files: refused at once, before expansion or neighbour search ---------------------


def _fm3m_general_sites(n: int) -> str:
    rng = np.random.default_rng(0)
    rows = "".join(f"Cu{i} Cu {x:.4f} {y:.4f} {z:.4f}\n" for i, (x, y, z) in enumerate(rng.uniform(0.01, 0.49, (n, 3))))
    return f"data_big\n{_cell(30.0)}_symmetry_space_group_name_H-M 'F m -3 m'\n{_sites_header()}{rows}"


def _cell(a: float, b: float | None = None) -> str:
    b = a if b is None else b
    return (
        f"_cell_length_a {a}\n_cell_length_b {b}\n_cell_length_c {a}\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
    )


def _sites_header() -> str:
    return (
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
    )


def test_atoms_are_counted_before_the_expansion_is_built() -> None:
    start = time.perf_counter()
    block = _one(_fm3m_general_sites(120), max_atoms=500)  # ~23,000 atoms once expanded
    assert isinstance(block.error, TooManyAtomsError) and "192 symmetry operations" in str(block.error)
    p1 = "data_p1\n" + _cell(100.0) + _sites_header() + "".join(f"H{i} H 0.{i:05d} 0.5 0.5\n" for i in range(6000))
    assert isinstance(_one(p1, max_atoms=500).error, TooManyAtomsError)
    assert time.perf_counter() - start < 10  # 40 s and 6.6 s with the old reader


@pytest.mark.parametrize(
    ("cell", "coords", "match"),
    [
        (_cell(-4.0), "0 0 0", "length a = -4"),
        (_cell(4.0, 0.0), "0 0 0", "length b = 0"),
        (_cell(1e300), "0 0 0", "length a"),
        (_cell(4.0), "1e300 0 0", "fractional coordinates"),
        (_cell(0.05), "0 0 0", "per atom"),  # grew the worker to 5-6 GB in the neighbour search
        (_cell(4.0).replace("_cell_angle_gamma 90", "_cell_angle_gamma 180"), "0 0 0", "gamma"),
    ],
)
def test_impossible_cells_are_refused_before_any_neighbour_search(cell: str, coords: str, match: str) -> None:
    text = f"data_x\n{cell}{_sites_header()}Cu1 Cu {coords}\n"
    start = time.perf_counter()
    block = _one(text)
    assert isinstance(block.error, InvalidCellError) and block.error.code == "invalid_cell"
    assert match in str(block.error)
    with pytest.raises(InvalidCellError):
        cif_to_graphs(text)
    assert time.perf_counter() - start < 5


def test_newline_floods_fail_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidCIFError):
        read_structures("data_x" + "\n" * 200_000)
    with pytest.raises(InvalidCIFError):
        read_structures("data_x\n" + "'x " * 30_000)  # malformed and too large for the fallback
    assert time.perf_counter() - start < 5  # 101 s and 32 s with the old reader


# -- occupancies, and errors that cite the file's labels ---------------------------------------


def _nacl(cl_rows: str) -> str:
    head = (
        "data_NaCl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'F m -3 m'\nloop_\n"
        "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "_atom_site_occupancy\nNa1 Na 0 0 0 1\n"
    )
    return head + cl_rows


def test_an_occupancy_near_1_is_read_as_1_with_a_notice() -> None:
    block = _one(_nacl("Cl1 Cl 0.5 0.5 0.5 0.995\n"))
    assert block.structure is not None and block.structure.is_ordered and len(block.structure) == 8
    assert _codes(block) == ["occupancy_rounded"] and "'Cl1' (0.995)" in block.notices[0].detail
    assert structure_to_graph(block.structure).num_nodes == 8


def test_a_partial_occupancy_cites_the_label_and_the_listed_site_count() -> None:
    block = _one(_nacl("Cl1 Cl 0.5 0.5 0.5 0.995\n"), occupancy_tolerance=0.001)
    assert _codes(block) == []
    with pytest.raises(DisorderedStructureError) as exc:
        structure_to_graph(block.structure)
    message = str(exc.value)
    assert "1 listed site has" in message and "'Cl1' = Cl0.995, 4 atoms in the cell" in message
    assert "site 0" not in message and "tolerance of at least 0.005" in message
    assert exc.value.needed_tolerance == pytest.approx(0.005)
    # two elements on one site: no tolerance helps, and both rows are cited
    block = _one(_nacl("Cl1 Cl 0.5 0.5 0.5 0.5\nBr1 Br 0.5 0.5 0.5 0.5\n"))
    with pytest.raises(DisorderedStructureError) as exc:
        structure_to_graph(block.structure)
    assert "'Cl1/Br1' = Cl0.5 Br0.5" in str(exc.value) and exc.value.needed_tolerance is None
    assert "tolerance" not in str(exc.value)


def test_overlapping_atoms_are_cited_by_label() -> None:
    block = _one(_nacl("Cl1 Cl 0.5 0.5 0.5 1\nCl2 Cl 0.52 0.5 0.5 1\n"))
    with pytest.raises(OverlappingAtomsError, match="Atoms 'Cl1' \\(Cl\\) and 'Cl2' \\(Cl\\) are 0.113 Å apart"):
        structure_to_graph(block.structure)
