"""Periodic crystal graphs: a pymatgen structure to a torch-geometric ``Data``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from .errors import (
    DisorderedStructureError,
    EmptyStructureError,
    IsolatedAtomError,
    OverlappingAtomsError,
    UnsupportedElementError,
)
from .features import MAX_Z
from .graph_config import GraphConfig
from .parsing import parse_cif

__all__ = ["structure_to_graph", "cif_to_graphs", "neighbor_list"]


def _name(structure: Structure, i: int) -> str:
    """How an error cites site ``i``: its CIF label (``'Cl1'``), else its index (``site 3``)."""
    site = structure[i]
    label = site.label
    return f"'{label}'" if label and label != site.species_string else f"site {i}"


def disorder_message(names: Sequence[str], species: Sequence[dict[str, float]]) -> tuple[str, float | None]:
    """The sentence of a ``disordered_structure`` error, and the occupancy tolerance that would accept it.

    Args:
        names: How each disordered atom is cited (its CIF label, or ``site i``), one per atom of
            the expanded cell: atoms generated from one listed site are counted once.
        species: Each disordered atom's ``{element: occupancy}``.

    Returns:
        The message, and the smallest occupancy tolerance under which every disordered site
        would read as fully occupied (``None`` when a site holds two elements or is far from 1).
    """
    listed: dict[str, list[object]] = {}
    for name, occ in zip(names, species, strict=True):
        entry = listed.setdefault(name, [occ, 0])
        entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
    shown = []
    for name, (occ, count) in list(listed.items())[:5]:
        text = " ".join(f"{el}{amount:g}" for el, amount in occ.items())  # type: ignore[attr-defined]
        shown.append(f"{name} = {text}" + (f", {count} atoms in the cell" if count != 1 else ""))
    more = " ..." if len(listed) > 5 else ""
    n = len(listed)
    message = (
        f"The structure is disordered: {n} listed site{'s' if n != 1 else ''} "
        f"{'have' if n != 1 else 'has'} partial occupancy or mixed species ({'; '.join(shown)}{more}); "
        "only ordered structures can be predicted."
    )
    needed: float | None = None
    if all(len(occ) == 1 for occ in species):
        needed = max(1 - sum(occ.values()) for occ in species)
        if 0 < needed <= 0.1:
            message += (
                f" The occupancy is within {needed:.3g} of 1: read with an occupancy tolerance of at least "
                f"{needed:.3g}, it would count as fully occupied."
            )
        else:
            needed = None
    return message, needed


def _check_species(structure: Structure) -> np.ndarray:
    if len(structure) == 0:
        raise EmptyStructureError("The structure has no atoms.")
    if not structure.is_ordered:
        sites = [i for i, s in enumerate(structure) if not s.is_ordered]
        message, needed = disorder_message(
            [_name(structure, i) for i in sites], [structure[i].species.get_el_amt_dict() for i in sites]
        )
        raise DisorderedStructureError(message, needed_tolerance=needed)
    numbers = []
    for site in structure:
        el = site.specie
        z = getattr(el, "Z", None)
        if z is None or not 1 <= int(z) <= MAX_Z:
            raise UnsupportedElementError(
                f"Element '{el}' is not supported: the models know elements with Z = 1-{MAX_Z}."
            )
        numbers.append(int(z))
    return np.asarray(numbers, dtype=np.int64)


#: The first search expects this many atoms inside its radius (twice ``max_neighbors`` = 12).
_FIRST_SEARCH_NEIGHBOURS = 24
_ROUND = 6  # distances are compared rounded to 1e-6 Å


def _search(structure: Structure, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    center, neighbor, images, dist = structure.get_neighbor_list(r=radius, numerical_tol=1e-8, exclude_self=True)
    return center, neighbor, np.asarray(images, dtype=np.int64).reshape(-1, 3), dist


def _first_radius(structure: Structure, config: GraphConfig) -> float:
    """A radius expected to hold ``_FIRST_SEARCH_NEIGHBOURS`` atoms (from the density), at most the cutoff."""
    per_atom = structure.volume / max(len(structure), 1)
    radius = (3 * _FIRST_SEARCH_NEIGHBOURS * per_atom / (4 * np.pi)) ** (1 / 3)
    return float(min(config.cutoff, max(radius, config.min_distance + 1.0)))


def _select(
    n: int, center: np.ndarray, neighbor: np.ndarray, images: np.ndarray, dist: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` first pairs of each centre in (distance rounded to 1e-6 Å, neighbour, image) order."""
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], neighbor, np.round(dist, _ROUND), center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    counts = np.bincount(center, minlength=n)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(center)) - np.repeat(first, counts)
    keep = rank < k
    return center[keep], neighbor[keep], dist[keep], counts


def neighbor_list(structure: Structure, config: GraphConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``max_neighbors`` nearest periodic neighbours of every atom within the cutoff.

    Ties are broken deterministically (distance rounded to 1e-6 Å, then neighbour index, then
    image). The search first uses a smaller radius, expected from the density to hold twice
    ``max_neighbors`` atoms; when every atom has ``max_neighbors`` neighbours well inside it
    (the last kept one more than 1e-6 Å inside, so no pair outside can tie with it) the result is
    exactly the full-cutoff one, else the search is redone at the cutoff.

    Returns:
        ``(center, neighbor, distance)`` arrays of length ``E``, sorted by center then
        distance.

    Raises:
        OverlappingAtomsError: two atoms closer than ``config.min_distance``.
        IsolatedAtomError: an atom with no neighbour inside the cutoff.
    """
    n = len(structure)
    k = config.max_neighbors
    radius = _first_radius(structure, config)
    center, neighbor, images, dist = _search(structure, radius)
    if radius < config.cutoff:
        counts = np.bincount(center, minlength=n)
        if counts.min() >= k:
            sel_center, sel_neighbor, sel_dist, _ = _select(n, center, neighbor, images, dist, k)
            last = sel_dist.reshape(n, k).max(axis=1)
            if float(np.round(last, _ROUND).max()) < round(radius, _ROUND) - 2 * 10**-_ROUND:
                _check_overlap(structure, center, neighbor, dist, config)
                return sel_center.astype(np.int64), sel_neighbor.astype(np.int64), sel_dist
        center, neighbor, images, dist = _search(structure, config.cutoff)
    _check_overlap(structure, center, neighbor, dist, config)
    center, neighbor, dist, counts = _select(n, center, neighbor, images, dist, k)
    if (counts == 0).any():
        i = int(np.flatnonzero(counts == 0)[0])
        raise IsolatedAtomError(
            f"Atom {_name(structure, i)} ({structure[i].specie}) has no neighbour within {config.cutoff} Å."
        )
    return center.astype(np.int64), neighbor.astype(np.int64), dist


def _check_overlap(
    structure: Structure, center: np.ndarray, neighbor: np.ndarray, dist: np.ndarray, config: GraphConfig
) -> None:
    if len(dist) and dist.min() < config.min_distance:
        k = int(np.argmin(dist))
        i, j = int(center[k]), int(neighbor[k])
        raise OverlappingAtomsError(
            f"Atoms {_name(structure, i)} ({structure[i].specie}) and {_name(structure, j)} "
            f"({structure[j].specie}) are {dist[k]:.3f} Å apart, closer than {config.min_distance} Å."
        )


def structure_to_graph(structure: Structure, config: GraphConfig | None = None) -> Data:
    """Build the crystal graph of one structure.

    Args:
        structure: An ordered pymatgen structure.
        config: Graph settings; the defaults when ``None``.

    Returns:
        A ``Data`` with ``z`` (atomic numbers), ``edge_index`` (row 0: neighbour ``j``,
        row 1: centre ``i``; messages flow ``j -> i``), ``edge_dist`` (Å) and ``num_nodes``.

    Shapes:
        ``z: [N]`` int64, ``edge_index: [2, E]`` int64, ``edge_dist: [E]`` float32.

    Raises:
        StructureError: a subclass naming what is wrong (empty, disordered, unsupported
        element, overlapping or isolated atoms).
    """
    config = config or GraphConfig()
    z = _check_species(structure)
    center, neighbor, dist = neighbor_list(structure, config)
    return Data(
        z=torch.from_numpy(z),
        edge_index=torch.from_numpy(np.stack([neighbor, center])),
        edge_dist=torch.from_numpy(dist.astype(np.float32)),
        num_nodes=len(z),
    )


def cif_to_graphs(data: str | bytes, config: GraphConfig | None = None) -> list[tuple[str, Data]]:
    """Parse a CIF and build one graph per data block.

    Returns:
        ``(block_name, graph)`` pairs in file order.

    Raises:
        StructureError: the first block that cannot be turned into a graph.
    """
    return [(name, structure_to_graph(s, config)) for name, s in parse_cif(data)]
