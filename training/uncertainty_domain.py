"""The training set's applicability domain: element counts, atoms per cell, density range."""

from __future__ import annotations

from collections import Counter

import gemmi
import numpy as np

from crystalgraph import density_g_cm3

from .pipeline import Prepared

__all__ = ["domain_stats", "RARE_BELOW"]

#: An element seen in fewer training crystals than this is ``element_rare_in_training_set``.
RARE_BELOW = 20


def _volume(path) -> float:
    block = gemmi.cif.read(str(path)).sole_block()
    keys = ("a", "b", "c", "alpha", "beta", "gamma")
    vals = [float(block.find_value(f"_cell_{'length' if len(k) == 1 else 'angle'}_{k}").split("(")[0]) for k in keys]
    return gemmi.UnitCell(*vals).volume


def _cells(prepared: Prepared, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    path = dict(zip(prepared.data.ids, prepared.data.paths, strict=True))
    atoms = np.array([prepared.graphs[m].num_nodes for m in ids])
    dens = np.array([density_g_cm3(prepared.graphs[m].z.numpy(), _volume(path[m])) for m in ids])
    return atoms, dens


def domain_stats(prepared: Prepared, train: list[str], test: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """What the service checks a structure against, and which test crystals each rule flags.

    Returns:
        The domain (for ``uncertainty.json``) and, per warning code, a ``[len(test)]`` mask.
    """
    from pymatgen.core import Element

    def elements(m: str) -> set[str]:
        return {Element.from_Z(int(z)).symbol for z in prepared.graphs[m].z.unique().tolist()}

    counts: Counter[str] = Counter()
    for m in train:
        counts.update(elements(m))
    atoms, dens = _cells(prepared, train)
    t_atoms, t_dens = _cells(prepared, test)
    lo, hi = float(dens.min()), float(dens.max())
    rare = {e for e, n in counts.items() if n < RARE_BELOW}
    flags = {
        "element_not_in_training_set": np.array([bool(elements(m) - set(counts)) for m in test]),
        "element_rare_in_training_set": np.array([bool(elements(m) & rare) for m in test]),
        "too_many_atoms": t_atoms > atoms.max(),
        "density_out_of_range": (t_dens < round(lo, 4)) | (t_dens > round(hi, 4)),
    }
    return {
        "element_counts": dict(sorted(counts.items())),
        "rare_below": RARE_BELOW,
        "max_atoms": int(atoms.max()),
        "density_g_cm3": [round(lo, 4), round(hi, 4)],
    }, flags
