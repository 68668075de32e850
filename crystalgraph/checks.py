"""Sanity checks on a cell and its atoms, run before any expansion or neighbour search.

They bound the cost of reading hostile files: a neighbour search enumerates about
``(cutoff³ / volume per atom)`` pairs per atom, so a cell whose atoms are packed tighter than
any solid, or coordinates far outside the cell, are refused before that search starts.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InvalidCellError

__all__ = [
    "MIN_VOLUME_PER_ATOM",
    "MAX_CELL_LENGTH",
    "MAX_FRACTIONAL",
    "cell_volume",
    "check_cell",
    "check_lattice",
    "check_coordinates",
    "check_volume_per_atom",
]

#: Å³ per atom below which a cell is refused: the densest known solids hold about 5 Å³ per atom
#: (diamond 5.7); below 1 Å³ atoms would have to sit closer than any bond.
MIN_VOLUME_PER_ATOM = 1.0
#: Longest cell edge accepted (Å); 10 µm is larger than any crystal cell.
MAX_CELL_LENGTH = 1e5
#: Largest fractional coordinate accepted in absolute value (a point 10,000 cells away is an error).
MAX_FRACTIONAL = 1e4


def check_cell(params: tuple[float, ...]) -> None:
    """Refuse cell lengths and angles no crystal has (``a, b, c`` in Å, ``α, β, γ`` in degrees).

    Raises:
        InvalidCellError: a length not positive or not finite, an angle outside (0°, 180°), or
            angles that close no cell (zero or imaginary volume).
    """
    a, b, c, alpha, beta, gamma = params
    for name, value in zip("abc", (a, b, c), strict=True):
        if not math.isfinite(value) or value <= 0 or value > MAX_CELL_LENGTH:
            raise InvalidCellError(
                f"The cell length {name} = {value:g} Å is not a length a crystal cell can have "
                f"(must be positive and at most {MAX_CELL_LENGTH:g} Å)."
            )
    for name, value in zip(("alpha", "beta", "gamma"), (alpha, beta, gamma), strict=True):
        if not math.isfinite(value) or not 0 < value < 180:
            raise InvalidCellError(f"The cell angle {name} = {value:g}° is not between 0° and 180°.")
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    if 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg <= 1e-12:
        raise InvalidCellError(
            f"The cell angles alpha = {alpha:g}°, beta = {beta:g}°, gamma = {gamma:g}° close no cell (its volume is 0)."
        )


def cell_volume(params: tuple[float, ...]) -> float:
    """Volume (Å³) of a cell given as ``a, b, c, α, β, γ``."""
    a, b, c, alpha, beta, gamma = params
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    return a * b * c * math.sqrt(max(0.0, 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg))


def check_lattice(matrix: np.ndarray) -> None:
    """The same checks on a lattice given as three vectors (rows, Å)."""
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise InvalidCellError("The lattice vectors are not three finite 3-vectors.")
    lengths = np.linalg.norm(matrix, axis=1)
    if np.any(lengths <= 0) or np.any(lengths > MAX_CELL_LENGTH):
        raise InvalidCellError(f"The lattice vector lengths {np.round(lengths, 6).tolist()} Å are not a crystal's.")
    volume = abs(float(np.linalg.det(matrix)))
    if volume <= 1e-12 * float(np.prod(lengths)):
        raise InvalidCellError("The lattice vectors are coplanar: the cell has no volume.")


def check_coordinates(frac: np.ndarray) -> None:
    """Refuse non-finite fractional coordinates, or ones more than ``MAX_FRACTIONAL`` cells away."""
    if frac.size and (not np.all(np.isfinite(frac)) or float(np.abs(frac).max()) > MAX_FRACTIONAL):
        bad = frac[~np.all(np.isfinite(frac) & (np.abs(frac) <= MAX_FRACTIONAL), axis=1)][0]
        raise InvalidCellError(
            f"An atom has fractional coordinates {bad.tolist()}: not finite, or more than "
            f"{MAX_FRACTIONAL:g} cells away."
        )


def check_volume_per_atom(volume: float, n_atoms: int) -> None:
    """Refuse a cell with less than ``MIN_VOLUME_PER_ATOM`` Å³ per atom (before the neighbour search)."""
    if n_atoms and volume / n_atoms < MIN_VOLUME_PER_ATOM:
        raise InvalidCellError(
            f"The cell holds {n_atoms} atom(s) in {volume:.4g} Å³ ({volume / n_atoms:.3g} Å³ per atom); "
            f"no solid is denser than {MIN_VOLUME_PER_ATOM:g} Å³ per atom: check the cell lengths."
        )
