"""Shared fixtures: crystals built in code with pymatgen."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure


@pytest.fixture
def nacl() -> Structure:
    """Conventional rock-salt NaCl, a = 5.64 Å: 6 nearest neighbours at a/2."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def cu_primitive() -> Structure:
    """fcc Cu primitive cell: one atom, 12 nearest neighbours at a/√2."""
    a = 3.61
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Cu"], [[0, 0, 0]])


@pytest.fixture
def triclinic() -> Structure:
    """A low-symmetry 3-atom triclinic cell."""
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 77.0, 84.0, 101.0)
    return Structure(lattice, ["Si", "O", "Mg"], [[0.1, 0.2, 0.3], [0.55, 0.35, 0.8], [0.8, 0.7, 0.15]])


@pytest.fixture
def perovskite() -> Structure:
    """Cubic SrTiO3."""
    return Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


import csv  # noqa: E402
import os  # noqa: E402
import tarfile  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

SHARED_ARCHIVE = Path(
    os.environ.get("CRYSTAL_SHARED_ARCHIVE", Path(__file__).resolve().parents[2] / "shared/data/mp-crystals.tar.gz")
)


@pytest.fixture(scope="session")
def mp_subset(tmp_path_factory) -> Path:
    """About 430 real Materials Project crystals (a fixed pseudo-random 1/80 of the shared set).

    Extracted from ``../shared/data/mp-crystals.tar.gz`` into a temporary CGCNN-format folder.
    """
    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"shared data not found at {SHARED_ARCHIVE}")
    out = tmp_path_factory.mktemp("mp-subset")
    (out / "cifs").mkdir()
    keep: set[str] = set()
    labels: list[list[str]] = []
    with tarfile.open(SHARED_ARCHIVE, "r:gz") as tar:
        for member in tar:
            name = Path(member.name)
            if name.suffix == ".cif" and zlib.crc32(name.stem.encode()) % 80 == 0:
                (out / "cifs" / name.name).write_bytes(tar.extractfile(member).read())
                keep.add(name.stem)
            elif name.name == "labels.csv":
                labels = list(csv.reader(tar.extractfile(member).read().decode().splitlines()))
    with open(out / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([labels[0]] + [r for r in labels[1:] if r[0] in keep])
    return out


# -- hand-made CIFs with the traps that made pymatgen read wrong structures (issue 13) --------

_TRAP_CELL = "_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n" + "".join(
    f"_cell_angle_{x} 90\n" for x in ("alpha", "beta", "gamma")
)
_SITES = "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"


def _trap(name: str, a: float, header: str, sites: str) -> str:
    return f"data_{name}\n{_TRAP_CELL.format(a=a)}{header}{_SITES}{sites}"


@pytest.fixture(scope="session")
def trap_cifs() -> dict[str, str]:
    """CIF texts that each hide one trap, keyed by the trap; see ``tests/core/test_reader.py``."""
    fcc_ni = "Ni1 Ni 0 0 0\n"
    return {
        # diamond: symmetry only as a Hall symbol (8 atoms; pymatgen read 1)
        "hall_only": _trap("diamond", 3.567, "_space_group_name_Hall 'F 4d 2 3 -1d'\n", "C1 C 0 0 0\n"),
        # diamond: an annotated H-M name (origin choice 1 written as 'S')
        "annotated_hm": _trap("diamond", 3.567, "_symmetry_space_group_name_H-M 'F d -3 m S'\n", "C1 C 0 0 0\n"),
        # fcc Ni: the space group in a DDLm (dotted) tag only (4 atoms; pymatgen read 1)
        "dotted_tag": _trap("Ni", 3.524, "_space_group.name_H-M_alt 'F m -3 m'\n", fcc_ni),
        # CO1 labels with type symbol C (a carbonyl), in a CO2-like P1 cell
        "co_labels": _trap("co", 6.0, "", "CO1 C 0 0 0\nO1 O 0.19 0 0\nCO2 C 0.5 0.5 0.5\nO2 O 0.69 0.5 0.5\n"),
        # CO1 labels and no type symbols at all: read as cobalt, with a warning
        "co_labels_no_type": "data_co\n"
        + _TRAP_CELL.format(a=4.0)
        + "loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        + "CO1 0 0 0\nO1 0.5 0.5 0.5\n",
        # a site whose coordinate is unknown ('?'): it gives no atom
        "dropped_site": _trap("NaCl", 5.64, "", "Na1 Na 0 0 0\nCl1 Cl 0.5 0.5 0.5\nPt1 Pt 0.25 0.25 ?\n"),
        # a space group no table knows, and no operations: read as P1
        "unknown_group": _trap("x", 3.524, "_symmetry_space_group_name_H-M 'Q m 9 z'\n", fcc_ni),
        # the cell holds Na Cl but the formula says NaCl2
        "composition": _trap(
            "NaCl", 5.64, "_chemical_formula_sum 'Na Cl2'\n_cell_formula_units_Z 1\n", "Na1 Na 0 0 0\nCl1 Cl .5 .5 .5\n"
        ),
        # a correct file: rock salt from operations listed as Fm-3m's generators' closure (no notice)
        "clean": _trap(
            "NaCl",
            5.64,
            "_symmetry_space_group_name_H-M 'F m -3 m'\n_chemical_formula_sum 'Na Cl'\n_cell_formula_units_Z 4\n",
            "Na1 Na 0 0 0\nCl1 Cl 0.5 0.5 0.5\n",
        ),
    }
