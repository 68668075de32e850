"""A periodic structure as plain arrays: what a crystal graph needs, without a pymatgen ``Structure``.

The CIF reader builds a :class:`Crystal` directly (lattice vectors, fractional coordinates,
species and the file's atom-site labels); a pymatgen ``Structure`` is built from it only when a
caller asks for one (:meth:`Crystal.to_structure`), which is most of what reading a small CIF
used to cost. Any ``Structure`` converts the other way (:meth:`Crystal.from_structure`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

__all__ = ["Crystal", "lattice_from_parameters"]


def lattice_from_parameters(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """``[3, 3]`` lattice vectors (rows, Å) of a cell given by lengths and angles (degrees).

    The same arithmetic as pymatgen's ``Lattice.from_parameters`` (so the same floats), without
    building the ``Lattice``.
    """
    angles_r = np.radians([alpha, beta, gamma])
    cos_alpha, cos_beta, cos_gamma = np.cos(angles_r)
    sin_alpha, sin_beta, _ = np.sin(angles_r)
    val = (cos_alpha * cos_beta - cos_gamma) / (sin_alpha * sin_beta)
    val = np.clip(val, -1, 1)
    gamma_star = np.arccos(val)
    return np.array(
        [
            [a * sin_beta, 0.0, a * cos_beta],
            [-b * sin_alpha * np.cos(gamma_star), b * sin_alpha * np.sin(gamma_star), b * cos_alpha],
            [0.0, 0.0, float(c)],
        ]
    )


@dataclass(frozen=True, eq=False)
class Crystal:
    """A periodic structure as arrays.

    Attributes:
        lattice: Lattice vectors as rows, Å.
        frac: Fractional coordinates of the atoms.
        species: Each atom's ``{element symbol: occupancy}`` (one element at occupancy 1 when
            ordered).
        labels: Each atom's name in the file (a CIF's atom-site label; ``Cl1/Br1`` for rows
            merged into one site), or ``None`` when the file names no sites.

    Shapes:
        ``lattice: [3, 3]`` float64, ``frac: [N, 3]`` float64.
    """

    lattice: np.ndarray
    frac: np.ndarray
    species: tuple[dict[str, float], ...]
    labels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.species)

    @property
    def volume(self) -> float:
        """Cell volume, Å³ (as pymatgen's ``Lattice.volume`` computes it)."""
        m = self.lattice
        return float(abs(np.dot(np.cross(m[0], m[1]), m[2])))

    @cached_property
    def cart(self) -> np.ndarray:
        """``[N, 3]`` Cartesian coordinates, Å (``frac @ lattice``, as pymatgen computes them)."""
        cart: np.ndarray = np.dot(self.frac, self.lattice)
        return cart

    @cached_property
    def composition(self) -> Composition:
        """The cell's composition (a pymatgen ``Composition``, for formulas)."""
        totals: dict[str, float] = {}
        for occ in self.species:
            for el, amount in occ.items():
                totals[el] = totals.get(el, 0.0) + amount
        return Composition(totals)

    @property
    def is_ordered(self) -> bool:
        """Every atom is one element at occupancy 1 (pymatgen's ``Site.is_ordered``)."""
        return all(len(occ) == 1 and sum(occ.values()) == 1 for occ in self.species)

    def name(self, i: int) -> str:
        """How an error cites atom ``i``: its label (``'Cl1'``), else its index (``site 3``)."""
        if self.labels is not None and self.labels[i]:
            return f"'{self.labels[i]}'"
        return f"site {i}"

    def to_structure(self) -> Structure:
        """The pymatgen ``Structure`` (site labels are the file's labels)."""
        labels = list(self.labels) if self.labels is not None else None
        return Structure(Lattice(self.lattice), list(self.species), self.frac, labels=labels)

    @classmethod
    def from_structure(cls, structure: Structure) -> Crystal:
        """The arrays of a pymatgen ``Structure`` (labels kept where they are not just the species)."""
        labels = [site.label if site.label != site.species_string else "" for site in structure]
        return cls(
            lattice=np.array(structure.lattice.matrix),
            frac=np.array(structure.frac_coords).reshape(-1, 3),
            species=tuple(site.species.get_el_amt_dict() for site in structure),
            labels=tuple(labels) if any(labels) else None,
        )

    @classmethod
    def from_parts(
        cls,
        cell: Sequence[float],
        frac: np.ndarray,
        species: Sequence[dict[str, float]],
        labels: Sequence[str] | None,
    ) -> Crystal:
        """From cell parameters ``(a, b, c, alpha, beta, gamma)`` (Å, degrees) and the atoms."""
        if len(cell) != 6 or not all(math.isfinite(x) for x in cell):
            raise ValueError("a cell is six finite numbers")
        return cls(lattice_from_parameters(*cell), frac, tuple(species), tuple(labels) if labels is not None else None)
