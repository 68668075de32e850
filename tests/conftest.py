"""Shared fixtures: crystals built in code with pymatgen, and the guard that keeps tests out of ``$HOME``."""

from __future__ import annotations

import csv
import os
import resource
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


# -- CPU time per test (``--cpu-durations N``): wall time says little on a loaded machine --------


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--cpu-durations N``: list the N tests that used the most CPU time, and the CPU time per file."""
    parser.addoption(
        "--cpu-durations",
        type=int,
        default=None,
        metavar="N",
        help="show the N tests that used the most CPU time (user + system, this process's threads and its "
        "finished child processes) and each file's total; 0: every test",
    )


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_CPU_SECONDS: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Charge each test the CPU time of its setup, call and teardown.

    Child processes count once they have been waited for: a session server's parse workers are
    charged to the test whose teardown stops that server (the last one using it).
    """
    start = _cpu_seconds()
    yield
    _CPU_SECONDS[item.nodeid] = _cpu_seconds() - start


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the ``--cpu-durations`` table."""
    n = config.getoption("cpu_durations")
    if n is None or not _CPU_SECONDS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("CPU time (user + system, with finished children)")
    by_file: dict[str, float] = {}
    for nodeid, seconds in _CPU_SECONDS.items():
        by_file[nodeid.split("::")[0]] = by_file.get(nodeid.split("::")[0], 0.0) + seconds
    ranked = sorted(_CPU_SECONDS.items(), key=lambda kv: -kv[1])
    for nodeid, seconds in ranked[: n or None]:
        write(f"{seconds:8.2f}s cpu  {nodeid}")
    write("per file:")
    for path, seconds in sorted(by_file.items(), key=lambda kv: -kv[1]):
        write(f"{seconds:8.2f}s cpu  {path}")
    write(f"{sum(_CPU_SECONDS.values()):8.2f}s cpu  total of {len(_CPU_SECONDS)} tests")


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
