"""Space-group symmetry of a CIF block: which operations to apply, and the unit-cell expansion.

The operations come, in this order, from the listed operations (``_space_group_symop_operation_xyz``,
``_symmetry_equiv_pos_as_xyz``), the Hall symbol, the Hermann-Mauguin name, the table number, each
read under its CIF 1.1 and dotted (DDLm) tag; gemmi's tables resolve the symbols. The expansion
reproduces pymatgen's ``CifParser`` (the reader this replaces): images wrapped into ``[0, 1)``,
two images the same site when every fractional coordinate differs by less than ``1e-4`` modulo 1,
the first image kept, sites ordered by species group (electronegativity) then by row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache

import gemmi
import numpy as np

__all__ = [
    "Symmetry",
    "resolve_symmetry",
    "images",
    "orbit_sizes",
    "orbits",
    "orbits_of",
    "merge_orbits",
    "orbits_disjoint",
    "SITE_TOLERANCE",
]

#: Two images are one site when each fractional coordinate differs by less than this (mod 1).
SITE_TOLERANCE = 1e-4

_OPS_TAGS = (
    "_space_group_symop_operation_xyz",
    "_space_group_symop.operation_xyz",
    "_symmetry_equiv_pos_as_xyz",
    "_symmetry_equiv.pos_as_xyz",
)
_HALL_TAGS = ("_space_group_name_Hall", "_space_group.name_Hall", "_symmetry_space_group_name_Hall")
_HM_TAGS = (
    "_space_group_name_H-M_alt",
    "_space_group.name_H-M_alt",
    "_symmetry_space_group_name_H-M",
    "_symmetry.space_group_name_H-M",
    "_space_group_name_H-M_full",
    "_space_group.name_H-M_full",
    "_space_group_name_H-M",
    "_space_group.name_H-M",
    "_symmetry_space_group_name_H-M_alt",
)
_NUMBER_TAGS = (
    "_space_group_IT_number",
    "_space_group.IT_number",
    "_symmetry_Int_Tables_number",
    "_symmetry.Int_Tables_number",
)
# Annotations some programs append to an H-M name: origin choice (S/Z), hexagonal/rhombohedral axes.
_ANNOTATION_RE = re.compile(r"\s*(?:[:(]?\s*(?:origin\s*choice\s*)?([12SZHR])\)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Symmetry:
    """The operations applied to the atom sites, and what the block declared.

    Attributes:
        rotations: ``[K, 3, 3]`` float rotation parts (fractional).
        translations: ``[K, 3]`` translation parts (fractional).
        source: Where they came from (``operations``, ``Hall symbol 'F 4d 2 3'``, ``none``...).
        declared: The space group the block names (H-M, Hall or number), or ``None``.
        declared_p1: Whether the declared group is P 1 (or nothing was declared).
        problem: Why a declaration could not be used, for the ``symmetry_fallback`` notice.
    """

    rotations: np.ndarray
    translations: np.ndarray
    source: str
    declared: str | None
    declared_p1: bool
    problem: str | None = None

    @property
    def n_ops(self) -> int:
        return int(self.rotations.shape[0])

    @cached_property
    def is_identity(self) -> bool:
        """The identity is the only operation (the P 1 files most programs write)."""
        return self.n_ops == 1 and bool((self.rotations[0] == np.eye(3)).all() and (self.translations == 0).all())


def _value(block: gemmi.cif.Block, tags: tuple[str, ...]) -> str | None:
    for tag in tags:
        value = block.find_value(tag)
        if value is not None and not gemmi.cif.is_null(value):
            return gemmi.cif.as_string(value).strip()
    return None


def _arrays(ops: list[gemmi.Op]) -> tuple[np.ndarray, np.ndarray]:
    rot = np.array([op.rot for op in ops], dtype=np.float64).reshape(-1, 3, 3) / gemmi.Op.DEN
    tran = np.array([op.tran for op in ops], dtype=np.float64).reshape(-1, 3) / gemmi.Op.DEN
    return rot, tran


def _parse_ops(values: tuple[str, ...]) -> list[gemmi.Op]:
    return [gemmi.parse_triplet(gemmi.cif.as_string(v)) for v in values]


@lru_cache(maxsize=1024)
def _listed(values: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of listed operations (cached: most files list one of a few hundred sets; read-only).

    Only lists of at most 192 operations (the largest space group's order) are cached, so that a
    hostile file's million operations are not kept.
    """
    rot, tran = _arrays(_parse_ops(values))
    rot.flags.writeable = False
    tran.flags.writeable = False
    return rot, tran


def _group_ops(sg: gemmi.SpaceGroup) -> list[gemmi.Op]:
    return list(sg.operations())


def find_by_name(name: str) -> gemmi.SpaceGroup | None:
    """Gemmi's table entry for an H-M name, tolerating quotes, spacing and setting annotations."""
    name = name.strip().strip("'\"").strip()
    if not name:
        return None
    tries = [name]
    match = _ANNOTATION_RE.search(name)
    if match and match.start() > 0:
        base, note = name[: match.start()].strip(), match.group(1).upper()
        setting = {"S": "1", "Z": "2"}.get(note, note)
        tries += [f"{base}:{setting}", base]
    tries.append(name.replace("_", ""))
    for attempt in tries:
        try:
            sg = gemmi.find_spacegroup_by_name(attempt)
        except (ValueError, RuntimeError):
            sg = None
        if sg is not None:
            return sg
    return None


def _is_p1(name: str | None, number: str | None, hall: str | None) -> bool:
    if name is not None and re.sub(r"[\s'\"_]", "", name).upper() != "P1":
        return False
    if number is not None and number.strip() not in {"1", "1.0"}:
        return False
    return hall is None or re.sub(r"\s", "", hall).upper() == "P1"


def resolve_symmetry(block: gemmi.cif.Block) -> Symmetry:
    """The symmetry operations of a block, from the first source that resolves.

    Listed operations are applied in file order (as pymatgen does); a table group is used when
    none are listed. With nothing usable the identity alone is applied and ``problem`` says why.
    """
    hall, name, number = _value(block, _HALL_TAGS), _value(block, _HM_TAGS), _value(block, _NUMBER_TAGS)
    declared = name or hall or (f"No. {number}" if number else None)
    p1 = _is_p1(name, number, hall)
    problems: list[str] = []
    for tag in _OPS_TAGS:
        column = block.find_values(tag)
        if column is None or len(column) == 0:
            continue
        try:
            values = tuple(column)
            rot, tran = _listed(values) if len(values) <= 192 else _arrays(_parse_ops(values))
        except (ValueError, RuntimeError) as exc:
            problems.append(f"its symmetry operations cannot be read ({exc})")
            break
        return Symmetry(rot, tran, f"{len(rot)} listed operations", declared, p1)
    sg: gemmi.SpaceGroup | None
    if hall is not None:
        try:
            sg = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(hall))
            ops = list(gemmi.symops_from_hall(hall)) if sg is None else _group_ops(sg)
            return Symmetry(*_arrays(ops), f"Hall symbol '{hall}'", declared, p1)
        except (ValueError, RuntimeError):
            problems.append(f"the Hall symbol '{hall}' is not recognised")
    if name is not None:
        sg = find_by_name(name)
        if sg is not None:
            return Symmetry(*_arrays(_group_ops(sg)), f"space group '{sg.xhm()}'", declared, p1)
        problems.append(f"the space group '{name}' is not recognised")
    if number is not None:
        try:
            sg = gemmi.find_spacegroup_by_number(int(float(number)))
        except (ValueError, RuntimeError, OverflowError):
            sg = None
        if sg is not None:
            return Symmetry(*_arrays(_group_ops(sg)), f"space group number {number}", declared, p1)
        problems.append(f"the space group number '{number}' is not recognised")
    identity = (np.eye(3)[None], np.zeros((1, 3)))
    return Symmetry(*identity, "none", declared, p1, "; ".join(problems) or None)


def coincide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[P, Q]``: whether ``a[p]`` and ``b[q]`` are one site (each coordinate within ``SITE_TOLERANCE`` mod 1).

    The test ``all(|d - round(d)| < SITE_TOLERANCE)`` on ``d = a[p] - b[q]``, made on the first
    coordinate for every pair and on the other two only for the pairs the first lets through (a
    few, in a real crystal): the same booleans as the test on all three, at a third of the cost.
    """
    dx = a[:, None, 0] - b[None, :, 0]
    out: np.ndarray = np.abs(dx - np.round(dx)) < SITE_TOLERANCE
    p, q = np.nonzero(out)
    if len(p):
        d = a[p, 1:] - b[q, 1:]
        out[p, q] = np.all(np.abs(d - np.round(d)) < SITE_TOLERANCE, axis=-1)
    return out


def _same(coords: np.ndarray, point: np.ndarray) -> np.ndarray:
    diff = coords - point
    same: np.ndarray = np.all(np.abs(diff - np.round(diff)) < SITE_TOLERANCE, axis=-1)
    return same


def images(sym: Symmetry, coords: np.ndarray) -> np.ndarray:
    """``[S, K, 3]``: every operation applied to every site, wrapped into ``[0, 1)``."""
    if sym.is_identity:  # the einsum's arithmetic on the identity: x * 1 + 0 + 0 (-0.0 becomes 0.0)
        out: np.ndarray = coords[:, None, :] + 0.0
    else:
        out = np.einsum("kij,sj->ski", sym.rotations, coords) + sym.translations[None]
    wrapped: np.ndarray = out - np.floor(out)
    return wrapped


def orbit_sizes(sym: Symmetry, coords: np.ndarray) -> np.ndarray:
    """``[S]`` atoms each site generates, by orbit-stabilizer: operations / operations fixing the site.

    Exact when the operations form a group (a table group, or a complete listed one); one
    vectorized pass, cheap enough to run on any file before anything is expanded.
    """
    diff = images(sym, coords) - coords[:, None, :]
    fixed = np.all(np.abs(diff - np.round(diff)) < SITE_TOLERANCE, axis=-1).sum(axis=1)
    sizes: np.ndarray = sym.n_ops // np.maximum(fixed, 1)
    return sizes


def orbits(sym: Symmetry, coords: np.ndarray) -> list[np.ndarray]:
    """Each site's distinct images (first kept, in operation order), before any cross-site merge.

    The sum of their lengths is the atom count of the expanded cell (less only sites that
    coincide with another row's images), known before the structure is built.
    """
    return orbits_of(images(sym, coords))


def orbits_of(site_images: np.ndarray) -> list[np.ndarray]:
    """:func:`orbits` from the ``[S, K, 3]`` images already computed.

    All sites at once: a site whose images are all distinct (the usual case) is its images; the
    first-kept walk over the operations runs only for sites where two images coincide.
    """
    n_sites, n_ops = site_images.shape[:2]
    if n_ops == 1:
        return list(site_images)
    out = []
    step = max(1, 1_000_000 // (n_ops * n_ops))  # bounds the [S, K, K, 3] comparison's memory
    for start in range(0, n_sites, step):
        chunk = site_images[start : start + step]
        diff = chunk[:, :, None, :] - chunk[:, None, :, :]
        same = np.all(np.abs(diff - np.round(diff)) < SITE_TOLERANCE, axis=-1)
        repeated = same.sum(axis=(1, 2)) > n_ops  # more than the diagonal
        for points, site_same, again in zip(chunk, same, repeated.tolist(), strict=True):
            if not again:
                out.append(points)
                continue
            alive = np.ones(n_ops, dtype=bool)
            kept = []
            for k in range(n_ops):
                if alive[k]:
                    kept.append(k)
                    alive &= ~site_same[k]
            out.append(points[kept])
    return out


def orbits_disjoint(orbit_list: list[np.ndarray]) -> bool:
    """Whether no image of one orbit coincides with an image of another (one test for them all).

    ``False`` also when the orbits hold more than 1,000 points together (too large to test at
    once: the caller then merges point by point).
    """
    if len(orbit_list) <= 1:
        return True
    sizes = [len(o) for o in orbit_list]
    if sum(sizes) > 1000:
        return False
    points = np.concatenate(orbit_list)
    source = np.repeat(np.arange(len(orbit_list)), sizes)
    same = coincide(points, points)
    return not bool((same & (source[:, None] != source[None, :])).any())


def merge_orbits(orbit_list: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Concatenate the orbits of one species group, dropping images already present (pymatgen's rule).

    Returns:
        ``(coords, owners)``: the kept images in order, and for each the position in
        ``orbit_list`` of the orbit it came from.
    """
    points = np.concatenate(orbit_list)
    source = np.repeat(np.arange(len(orbit_list)), [len(o) for o in orbit_list])
    if orbits_disjoint(orbit_list):  # the usual case: no image of one row falls on another's
        return points, source.tolist()
    kept: list[np.ndarray] = []
    owners: list[int] = []
    for index, orbit in enumerate(orbit_list):
        if not kept:
            kept.extend(orbit)
            owners += [index] * len(orbit)
            continue
        # the images of one orbit are distinct already: compare them with earlier orbits only
        prev = np.asarray(kept)
        for point in orbit:
            if not _same(prev, point).any():
                kept.append(point)
                owners.append(index)
    return np.asarray(kept).reshape(-1, 3), owners
