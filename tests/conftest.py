"""Shared fixtures: crystals built in code with pymatgen, and the guard that keeps tests out of ``$HOME``."""

from __future__ import annotations

import csv
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

#: The user's real home, read before any test can change ``HOME``.
REAL_HOME = Path.home().resolve()


def points_into_home(path: Path | str, allowed: tuple[Path, ...] = ()) -> bool:
    """Whether ``path`` lies in the user's real ``$HOME`` (outside the ``allowed`` temporary roots).

    A home of ``/`` (some containers) would contain everything: then nothing is said to point into it.
    """
    resolved = Path(path).expanduser().resolve()
    if Path(REAL_HOME.anchor) == REAL_HOME or any(resolved.is_relative_to(root) for root in allowed):
        return False
    return resolved.is_relative_to(REAL_HOME)


@pytest.fixture(scope="session")
def in_home(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path | str], bool]:
    """``in_home(path)``: whether a path lies in the user's real ``$HOME`` (not in a test's temporary folder)."""
    allowed = (tmp_path_factory.getbasetemp().resolve(), Path(tempfile.gettempdir()).resolve())
    return lambda path: points_into_home(path, allowed)


@pytest.fixture(scope="session", autouse=True)
def _never_touch_home_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test away from the user's real state (``~/.local/state``, ``~/.cache``).

    1. The default state and cache folders (``XDG_STATE_HOME``, ``CRYSTAL_CACHE_DIR``) point into
       a temporary folder for the whole session, subprocesses included.
    2. A guard: building a service ``Settings`` whose ``data_dir`` lies in ``$HOME`` fails the test
       on the spot, before any server could open (or sweep) a real job store. Every service test
       server is also given its own temporary ``data_dir`` (``tests/service/conftest.py``).
    """
    root = tmp_path_factory.mktemp("home-guard")
    allowed = (tmp_path_factory.getbasetemp().resolve(), Path(tempfile.gettempdir()).resolve())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        mp.setenv("CRYSTAL_CACHE_DIR", str(root / "cache"))
        try:
            from service.settings import Settings
        except ImportError:  # a checkout without the service: nothing to guard
            yield
            return
        original = Settings.__init__

        def guarded_init(self: Settings, *args: object, **kwargs: object) -> None:
            original(self, *args, **kwargs)  # type: ignore[arg-type]
            if points_into_home(self.data_dir, allowed):
                pytest.fail(
                    f"test settings point into $HOME: data_dir={self.data_dir} (from an argument or "
                    "CRYSTAL_DATA_DIR). Give the test a temporary data_dir (tmp_path); tests must never "
                    "share the user's real job store.",
                    pytrace=False,
                )

        mp.setattr(Settings, "__init__", guarded_init)
        yield


@pytest.fixture
def nacl() -> Structure:
    """Conventional rock-salt NaCl, a = 5.64 Å: 6 nearest neighbours at a/2."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def cu_primitive() -> Structure:
    """Fcc Cu primitive cell: one atom, 12 nearest neighbours at a/√2."""
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
