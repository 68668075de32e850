"""CGCNN-style element feature vectors, computed from pymatgen's element data.

Each element ``Z = 1..100`` is described by a fixed binary vector made of one-hot
blocks, following Table S2 of Xie & Grossman, PRL 120, 145301 (2018):

=======================  ======  ==========================================================
block                    width   binning
=======================  ======  ==========================================================
group                    18      group 1..18 (f-block elements: group 3, as pymatgen)
period                   9       rows 1..7, plus row 8 = lanthanides, row 9 = actinides
electronegativity        10      Pauling, 10 equal bins on [0.5, 4.0]
covalent radius          10      Å, 10 equal bins on [0.25, 2.50]
valence electrons        12      1..12: group for groups 1-12, group - 10 for 13-18
first ionization energy  10      ln(eV), 10 equal bins on [1.3, 3.3]
electron affinity        10      eV, 10 equal bins on [-3.0, 3.7]
block                    4       s, p, d, f
atomic volume            10      ln(cm³/mol), 10 equal bins on [1.5, 4.3]
=======================  ======  ==========================================================

That is 93 columns (the paper quotes 92). Values outside a range go to the end bin; a value
pymatgen does not have (electronegativity of He/Ne/Ar, covalent radius of Bk-Fm, molar
volume of At/Fr/Fm) leaves its block all zero. The table is deterministic: its
:func:`feature_hash` is stored in every checkpoint and checked when a model is loaded.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from functools import lru_cache

import numpy as np

__all__ = [
    "FEATURE_SET",
    "MAX_Z",
    "FEATURE_BLOCKS",
    "element_feature_table",
    "feature_hash",
    "table_hash",
]

#: Name and version of this feature recipe; bump it when the recipe changes.
FEATURE_SET = "cgcnn-onehot-v1"
#: Largest supported atomic number.
MAX_Z = 100

#: (name, width) of each one-hot block, in column order.
FEATURE_BLOCKS: tuple[tuple[str, int], ...] = (
    ("group", 18),
    ("period", 9),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionization_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
)


def _bin(value: float | None, lo: float, hi: float, n: int) -> int | None:
    if value is None or not math.isfinite(value):
        return None
    idx = int(math.floor((value - lo) / (hi - lo) * n))
    return min(max(idx, 0), n - 1)


def _element_bins(z: int) -> dict[str, int | None]:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    el = Element.from_Z(z)
    group = int(el.group)
    row = int(el.row)
    if el.is_lanthanoid:
        row = 8
    elif el.is_actinoid:
        row = 9
    x = float(el.X) if el.X and math.isfinite(el.X) else None
    cov = CovalentRadius.radius.get(el.symbol)
    valence = group if group <= 12 else group - 10
    ie = el.ionization_energies[0] if el.ionization_energies else None
    ea = el.electron_affinity
    mv = el.molar_volume
    return {
        "group": group - 1,
        "period": row - 1,
        "electronegativity": _bin(x, 0.5, 4.0, 10),
        "covalent_radius": _bin(cov, 0.25, 2.50, 10),
        "valence_electrons": min(max(valence, 1), 12) - 1,
        "first_ionization_energy": _bin(math.log(ie) if ie else None, 1.3, 3.3, 10),
        "electron_affinity": _bin(float(ea) if ea is not None else None, -3.0, 3.7, 10),
        "block": "spdf".index(el.block),
        "atomic_volume": _bin(math.log(float(mv)) if mv else None, 1.5, 4.3, 10),
    }


@lru_cache(maxsize=1)
def _table() -> np.ndarray:
    width = sum(w for _, w in FEATURE_BLOCKS)
    table = np.zeros((MAX_Z + 1, width), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            bins = _element_bins(z)
            offset = 0
            for name, w in FEATURE_BLOCKS:
                idx = bins[name]
                if idx is not None:
                    table[z, offset + idx] = 1.0
                offset += w
    table.setflags(write=False)
    return table


def element_feature_table() -> np.ndarray:
    """The feature table.

    Returns:
        A read-only float32 array of shape ``[MAX_Z + 1, 93]``; row ``Z`` describes element
        ``Z`` and row 0 is all zeros (no element).
    """
    return _table()


def table_hash(table: np.ndarray) -> str:
    """A short sha256 of a feature table's shape and float32 bytes."""
    arr = np.ascontiguousarray(table, dtype=np.float32)
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def feature_hash() -> str:
    """The hash of this code's feature table: stored in checkpoints, checked on load."""
    return table_hash(_table())
