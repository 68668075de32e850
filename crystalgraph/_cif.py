"""One CIF data block to a structure with gemmi, plus the cross-checks that make its notices.

Element symbols are read as pymatgen reads them (the type symbol, else the label; see
:mod:`._cif_checks`), and the cell is expanded as pymatgen expands it (see :mod:`._symmetry`), so
ordinary files give the structure pymatgen gave, atom for atom.
"""

from __future__ import annotations

import math
from functools import lru_cache, total_ordering
from typing import Any, NamedTuple, cast

import gemmi
import numpy as np
from pymatgen.core import Composition, Element

from ._cif_checks import composition_notice, is_element, label_notice, number, parse_symbol, symmetry_notice
from ._symmetry import (
    Symmetry,
    coincide,
    images,
    merge_orbits,
    orbit_sizes,
    orbits_disjoint,
    orbits_of,
    resolve_symmetry,
)
from .checks import cell_volume, check_cell, check_coordinates, check_volume_per_atom
from .crystal import Crystal, lattice_from_parameters
from .errors import InvalidCIFError, TooManyAtomsError
from .notices import Notice

__all__ = ["read_block", "OCCUPANCY_TOLERANCE"]

_IDEAL_FRACTIONS = (1 / 3, 2 / 3)
#: A site of one element whose occupancy is within this of 1 is read as fully occupied (with a notice).
OCCUPANCY_TOLERANCE = 0.01
_SITE_COLUMNS = ["label", "?type_symbol", "?fract_x", "?fract_y", "?fract_z", "?occupancy"]


def _ideal_all(coords: np.ndarray) -> np.ndarray:
    """Pymatgen's correction of finite-precision thirds (``0.6667`` -> ``2/3``), on every coordinate."""
    for frac in _IDEAL_FRACTIONS:
        coords[np.abs(coords / frac - 1) <= 1e-4] = frac
    return coords


@lru_cache(maxsize=4096)
def _symbol(text: str) -> str | None:
    """The element a type symbol or label names (``None``: none), cached: files repeat labels."""
    element = parse_symbol(text)
    return element if element is not None and is_element(element) else None


@lru_cache(maxsize=4096)
def _label_notice(label: str, type_symbol: str | None, element: str) -> Notice | None:
    return label_notice(label, type_symbol, element)


@total_ordering
class _Group:
    """Sort key of a site's species, the order pymatgen's ``Composition`` comparison gives."""

    def __init__(self, species: dict[str, float]) -> None:
        self.species = species
        self.comp = Composition(species)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Group) and self.comp == other.comp

    def __lt__(self, other: _Group) -> bool:
        return not self.comp >= other.comp


@lru_cache(maxsize=256)
def _electronegativity(symbol: str) -> float:
    x = Element(symbol).X
    return float("inf") if x != x else float(x)


def _groups(site_species: list[dict[str, float]]) -> list[Any]:
    """Sort keys of the sites' species: fast tuples when every site holds one element."""
    if all(len(s) == 1 for s in site_species):
        keys = []
        for species in site_species:
            ((el, amount),) = species.items()
            keys.append(_Single(_electronegativity(el), el, amount, species))
        return keys
    return [_Group(s) for s in site_species]


class _Single(NamedTuple):
    """One element's sort key, ordered as pymatgen orders ``Composition({el: amount})``."""

    x: float
    symbol: str
    amount: float
    species: dict[str, float]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Single) and self.symbol == other.symbol and abs(self.amount - other.amount) <= 1e-8

    def __lt__(self, other: object) -> bool:
        assert isinstance(other, _Single)
        if self.symbol != other.symbol:  # the more electronegative element first
            return (self.x, self.symbol) > (other.x, other.symbol)
        return other.amount - self.amount >= 1e-8

    def __hash__(self) -> int:
        """Unhashable: equality has a tolerance (a sort key only)."""
        raise TypeError("unhashable type: '_Single'")


def _runs(site_species: list[dict[str, float]]) -> list[tuple[list[int], dict[str, float]]]:
    """The sites grouped by equal species, groups in pymatgen's order (its ``Composition`` sort).

    Returns:
        ``(members, species)`` per group: the sites in file order, and the first one's species.
    """
    singles = [next(iter(s.items())) if len(s) == 1 else None for s in site_species]
    amounts: dict[str, float] = {}
    uniform = None not in singles
    for single in singles if uniform else ():
        el, amount = single  # type: ignore[misc]
        if not math.isfinite(amount) or amounts.setdefault(el, amount) != amount:
            uniform = False
            break
    if uniform:  # one element per site and one amount per element: the groups are the elements
        by_element: dict[str, list[int]] = {}
        for i, single in enumerate(singles):
            by_element.setdefault(single[0], []).append(i)  # type: ignore[index]
        ranked = sorted(by_element, key=lambda el: (_electronegativity(el), el), reverse=True)
        return [(by_element[el], site_species[by_element[el][0]]) for el in ranked]
    groups = _groups(site_species)
    order = sorted(range(len(groups)), key=lambda i: groups[i])
    runs: list[tuple[list[int], dict[str, float]]] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and groups[order[j + 1]] == groups[order[i]]:
            j += 1
        runs.append((order[i : j + 1], groups[order[i]].species))
        i = j + 1
    return runs


def _scaled(species: dict[str, float]) -> dict[str, float]:
    """A site's species with a total over 1 scaled down to 1 (pymatgen's rule)."""
    total = sum(species.values())
    scale = total if total > 1 else 1.0
    return {el: x / scale for el, x in species.items()}


def _cell(block: gemmi.cif.Block) -> tuple[float, ...] | None:
    values = []
    for name in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"):
        raw = block.find_value(f"_cell_{name}")
        if raw is None:
            raw = block.find_value(f"_cell.{name}")
        values.append(number(raw))
    if all(math.isnan(v) for v in values[:3]):
        return None
    missing = [n for n, v in zip("abc", values[:3], strict=True) if math.isnan(v)]
    if missing:
        raise InvalidCIFError(f"Data block '{block.name}' has no cell length {', '.join(missing)}.")
    return tuple(90.0 if i >= 3 and math.isnan(v) else v for i, v in enumerate(values))


def _site_table(block: gemmi.cif.Block) -> gemmi.cif.Table | None:
    for prefix in ("_atom_site_", "_atom_site."):
        table = block.find(prefix, _SITE_COLUMNS)
        if len(table) and table.has_column(2):
            return table
    return None


def _numbers(column: gemmi.cif.Column) -> np.ndarray:
    """A column of CIF numbers, read as pymatgen reads them.

    Python's ``float`` on the whole column, else each value through :func:`number`
    (uncertainties ``0.12(3)``, quotes, ``?``/``.`` as NaN).
    """
    raw = list(column)
    try:
        return np.array([float(v) for v in raw], dtype=np.float64)
    except ValueError:
        return np.array([number(v) for v in raw], dtype=np.float64)


def _site_columns(
    table: gemmi.cif.Table,
) -> tuple[list[str], list[str | None], list[str | None], np.ndarray, np.ndarray]:
    """The atom-site loop read a column at a time (no Python per value beyond a cached lookup).

    Returns:
        ``(labels, type_symbols, elements, coords, occupancies)``: per row, the label, the type
        symbol (``None`` when absent or null), the element read (``None``: none), ``[R, 3]``
        fractional coordinates (NaN where missing) and occupancies (NaN where not given).
    """
    n = len(table)
    as_string, is_null = gemmi.cif.as_string, gemmi.cif.is_null
    labels = [as_string(v) for v in table.column(0)]
    if table.has_column(1):
        type_symbols = [None if is_null(v) else as_string(v) for v in table.column(1)]
        elements = [_symbol(t if t is not None else label) for t, label in zip(type_symbols, labels, strict=True)]
    else:
        type_symbols = [None] * n
        elements = [_symbol(label) for label in labels]
    nan = np.full(n, np.nan)
    coords = np.stack([_numbers(table.column(i)) if table.has_column(i) else nan for i in (2, 3, 4)], axis=1)
    occupancies = _numbers(table.column(5)) if table.has_column(5) else nan
    return labels, type_symbols, elements, coords, occupancies


class _Rows(NamedTuple):
    """The atom-site rows that gave an atom, in file order."""

    labels: list[str]
    elements: list[str]
    occupancies: list[float]


def read_block(
    block: gemmi.cif.Block, max_atoms: int | None = None, occupancy_tolerance: float = OCCUPANCY_TOLERANCE
) -> tuple[Crystal, list[Notice]]:
    """The expanded unit cell of one block (as arrays), and the notices its checks raise.

    A site of one element whose occupancy is within ``occupancy_tolerance`` of 1 (0.995) is
    read as fully occupied, with an ``occupancy_rounded`` notice. Sites keep their CIF labels
    (``Crystal.labels``), for the errors a later step may cite.

    Raises:
        InvalidCIFError: no cell or no atom sites.
        InvalidCellError: a cell or coordinates no crystal can have.
        TooManyAtomsError: the expanded cell (counted before it is built) is over ``max_atoms``.
    """
    notices: list[Notice] = []
    cell = _cell(block)
    if cell is None:
        raise InvalidCIFError(f"Data block '{block.name}' has no unit cell (_cell_length_a/b/c).")
    check_cell(cell)
    table = _site_table(block)
    if table is None:
        raise InvalidCIFError(f"Data block '{block.name}' has no atom sites with fractional coordinates.")
    if max_atoms is not None and len(table) > max_atoms:
        raise TooManyAtomsError(
            f"The structure has at least {len(table)} atoms ({len(table)} atom sites); the limit is {max_atoms}."
        )
    labels, type_symbols, read, coords, occupancies = _site_columns(table)
    keep = np.array([el is not None for el in read]) & ~np.isnan(coords).any(axis=1)
    dropped = [label for label, ok in zip(labels, keep.tolist(), strict=True) if not ok]
    if dropped:
        index = np.flatnonzero(keep).tolist()
        labels, type_symbols, read = (
            [labels[i] for i in index],
            [type_symbols[i] for i in index],
            [read[i] for i in index],
        )
        coords, occupancies = coords[keep], occupancies[keep]
    elements = cast(list[str], read)  # the rows left all have an element
    for label, type_symbol, element in zip(labels, type_symbols, elements, strict=True):
        notice = _label_notice(label, type_symbol, element)
        if notice is not None:
            notices.append(notice)
    if dropped:
        shown = ", ".join(repr(x) for x in dropped[:5]) + (" ..." if len(dropped) > 5 else "")
        notices.append(
            Notice(
                "sites_dropped",
                f"{len(dropped)} atom-site row(s) gave no atom ({shown}): no element could be read, or a "
                "coordinate is missing.",
            )
        )
    if not labels:
        raise InvalidCIFError(f"Data block '{block.name}' has no atom site with an element and coordinates.")
    coords = _ideal_all(coords)
    rows = _Rows(labels, elements, np.where(np.isnan(occupancies), 1.0, occupancies).tolist())
    check_coordinates(coords)
    sym = resolve_symmetry(block)
    sym_notice = symmetry_notice(sym)
    if sym_notice is not None:
        notices.append(sym_notice)
    crystal = _expand(block.name, cell, rows, coords, sym, max_atoms, notices, occupancy_tolerance)
    found: dict[str, float] = {}
    for site in crystal.species:
        for el, amount in site.items():
            found[el] = found.get(el, 0.0) + amount
    comp_notice = composition_notice(block, found)
    if comp_notice is not None:
        notices.append(comp_notice)
    return crystal, notices


def _round_occupancies(
    site_species: list[dict[str, float]], site_labels: list[str], tolerance: float, notices: list[Notice]
) -> None:
    """Sites of one element within ``tolerance`` of full occupancy become fully occupied (in place)."""
    rounded = []
    for species, label in zip(site_species, site_labels, strict=True):
        if len(species) == 1:
            ((el, amount),) = species.items()
            if 1 - tolerance <= amount < 1:
                species[el] = 1.0
                rounded.append(f"'{label}' ({amount:g})")
    if rounded:
        notices.append(
            Notice(
                "occupancy_rounded",
                f"Site(s) {', '.join(rounded[:5])}{' ...' if len(rounded) > 5 else ''} have an occupancy within "
                f"the occupancy tolerance ({tolerance:g}) of 1 and were read as fully occupied.",
            )
        )


def _expand(
    name: str,
    cell: tuple[float, ...],
    rows: _Rows,
    coords: np.ndarray,
    sym: Symmetry,
    max_atoms: int | None,
    notices: list[Notice],
    occupancy_tolerance: float = OCCUPANCY_TOLERANCE,
) -> Crystal:
    # Count the atoms first, from the rows and the symmetry operations (rows at one position,
    # merged below, can only lower the count): a huge cell is refused before it is built.
    n_rows = len(rows.labels)
    upper = n_rows * sym.n_ops
    if max_atoms is not None and upper > max_atoms:
        upper = int(orbit_sizes(sym, coords).sum())
    if max_atoms is not None and upper > max_atoms:
        raise TooManyAtomsError(
            f"The structure has about {upper:,} atoms in its unit cell ({n_rows} sites x {sym.n_ops} symmetry "
            f"operations); the limit is {max_atoms}."
        )
    row_images = images(sym, coords)  # [R, K, 3]
    row_orbits = orbits_of(row_images)
    # Rows at one position (under the symmetry) share a site: pymatgen's disordered sites.
    n_ops = row_images.shape[1]
    any_match = True
    # With the identity alone and every coordinate in [0, 1), each row is its own image, so this test
    # is also the cell-wide one (orbits_disjoint) on the same numbers: it is made once.
    in_cell = sym.is_identity and bool(((coords >= 0) & (coords < 1)).all())
    if n_rows * n_rows * n_ops <= 2_000_000:  # one test for the usual case: no two rows coincide
        hit = np.any(coincide(row_images.reshape(-1, 3), coords).reshape(n_rows, n_ops, n_rows), axis=1)
        np.fill_diagonal(hit, False)
        any_match = bool(hit.any())
    if any_match:
        keys, site_species, site_labels = _merge_rows(rows, coords, row_images, notices)
    else:
        keys = list(range(n_rows))
        site_species = [{el: max(occ, 1e-8)} for el, occ in zip(rows.elements, rows.occupancies, strict=True)]
        site_labels = list(rows.labels)
    if any_match or min(rows.occupancies) < 1:  # else every site is one row at full occupancy or more
        _round_occupancies(site_species, site_labels, occupancy_tolerance, notices)
    site_orbits = [row_orbits[k] for k in keys]
    estimate = sum(len(o) for o in site_orbits)
    check_volume_per_atom(cell_volume(cell), estimate)
    runs = _runs(site_species)
    species: list[dict[str, float]] = []
    labels: list[str] = []
    merged = 0
    distinct = not any_match if in_cell else orbits_disjoint(site_orbits)
    if distinct:  # no image of one site falls on another's: nothing to merge
        sequence = [m for members, _ in runs for m in members]
        frac = np.concatenate([site_orbits[m] for m in sequence])
        for members, group_species in runs:
            species += [_scaled(group_species)] * sum(len(site_orbits[m]) for m in members)
        labels = [site_labels[m] for m in sequence for _ in range(len(site_orbits[m]))]
    else:
        all_coords: list[np.ndarray] = []
        for members, group_species in runs:
            group_coords, owners = merge_orbits([site_orbits[m] for m in members])
            merged += sum(len(site_orbits[m]) for m in members) - len(group_coords)
            species += [_scaled(group_species)] * len(group_coords)
            all_coords.append(group_coords)
            labels += [site_labels[members[o]] for o in owners]
        frac = np.concatenate(all_coords)
    if merged:
        notices.append(
            Notice(
                "sites_merged",
                f"{merged} atom(s) generated from different rows fell on the same position and were counted "
                "once: the file may list symmetry-equivalent sites twice.",
            )
        )
    return Crystal(lattice_from_parameters(*cell), frac, tuple(species), tuple(labels))


def _merge_rows(
    rows: _Rows, coords: np.ndarray, row_images: np.ndarray, notices: list[Notice]
) -> tuple[list[int], list[dict[str, float]], list[str]]:
    """Rows at one position under the symmetry, read as one site (pymatgen's disordered sites).

    Returns:
        ``(keys, site_species, site_labels)``: the first row of each site, its species, its label
        (``A/B`` for the rows merged into it).
    """
    keys: list[int] = []
    site_species: list[dict[str, float]] = []
    site_labels: list[str] = []
    shared: list[str] = []
    for j, (label, element, occ) in enumerate(zip(rows.labels, rows.elements, rows.occupancies, strict=True)):
        match = -1
        if keys:
            hit = coincide(row_images[j], coords[keys])  # [K, keys]
            rows_hit = hit.any(axis=1)
            if rows_hit.any():
                match = int(np.argmax(hit[int(np.argmax(rows_hit))]))
        amount = max(occ, 1e-8)
        if match < 0:
            keys.append(j)
            site_species.append({element: amount})
            site_labels.append(label)
        else:
            site_species[match][element] = site_species[match].get(element, 0.0) + amount
            shared.append(f"'{site_labels[match].rsplit('/', 1)[-1]}' and '{label}'")
            site_labels[match] = f"{site_labels[match]}/{label}"  # errors cite every row of the site
    if shared:
        notices.append(
            Notice(
                "sites_merged",
                f"Rows {', '.join(shared[:3])}{' ...' if len(shared) > 3 else ''} sit at one position (under the "
                "symmetry) and were read as one site, holding both rows' atoms.",
            )
        )
    return keys, site_species, site_labels
