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
