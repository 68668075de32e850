"""Periodic crystal graphs: a pymatgen structure to a torch-geometric ``Data``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Element, Structure
from torch_geometric.data import Data

from ._neighbors import nearest
from .batch import GraphArrays
from .crystal import Crystal
from .errors import (
    DisorderedStructureError,
    EmptyStructureError,
    IsolatedAtomError,
    OverlappingAtomsError,
    UnsupportedElementError,
)
from .features import MAX_Z
from .graph_config import GraphConfig
from .parsing import read_blocks

__all__ = ["structure_to_graph", "crystal_graph", "cif_to_graphs", "neighbor_list", "disorder_message"]


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
    first: dict[str, dict[str, float]] = {}
    atoms: dict[str, int] = {}
    for name, occ in zip(names, species, strict=True):
        first.setdefault(name, occ)
        atoms[name] = atoms.get(name, 0) + 1
    listed = first
    shown = []
    for name, occ in list(first.items())[:5]:
        count = atoms[name]
        text = " ".join(f"{el}{amount:g}" for el, amount in occ.items())
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


def _graph_arrays(
    lattice: np.ndarray,
    cart: np.ndarray,
    config: GraphConfig,
    name: Callable[[int], str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    center, neighbor, dist, counts, min_dist, (i, j) = nearest(
        lattice, cart, config.max_neighbors, config.cutoff, config.min_distance
    )
    if min_dist < config.min_distance:
        raise OverlappingAtomsError(
            f"Atoms {name(i)} and {name(j)} are {min_dist:.3f} Å apart, closer than {config.min_distance} Å."
        )
    if (counts == 0).any():
        k = int(np.flatnonzero(counts == 0)[0])
        raise IsolatedAtomError(f"Atom {name(k)} has no neighbour within {config.cutoff} Å.")
    return center.astype(np.int64, copy=False), neighbor.astype(np.int64, copy=False), dist


def neighbor_list(structure: Structure, config: GraphConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``max_neighbors`` nearest periodic neighbours of every atom within the cutoff.

    Ties are broken deterministically (distance rounded to 1e-6 Å, then neighbour index, then
    image); see :mod:`._neighbors` for how the search finds exactly these pairs.

    Returns:
        ``(center, neighbor, distance)`` arrays of length ``E``, sorted by center then
        distance.

    Raises:
        OverlappingAtomsError: two atoms closer than ``config.min_distance``.
        IsolatedAtomError: an atom with no neighbour inside the cutoff.
    """
    return _graph_arrays(
        structure.lattice.matrix,
        structure.cart_coords,
        config,
        lambda i: f"{_name(structure, i)} ({structure[i].specie})",
    )


def _data(z: np.ndarray, center: np.ndarray, neighbor: np.ndarray, dist: np.ndarray) -> GraphArrays:
    return GraphArrays(z=z, edge_index=np.stack([neighbor, center]), edge_dist=dist.astype(np.float32))


def crystal_graph(crystal: Crystal, config: GraphConfig | None = None) -> GraphArrays:
    """The crystal graph of a :class:`Crystal` as arrays (no pymatgen, no torch): the fast path.

    The same graph as :func:`structure_to_graph` of ``crystal.to_structure()``.

    Raises:
        StructureError: as :func:`structure_to_graph`.
    """
    config = config or GraphConfig()
    if len(crystal) == 0:
        raise EmptyStructureError("The structure has no atoms.")
    if not crystal.is_ordered:
        sites = [i for i, occ in enumerate(crystal.species) if not (len(occ) == 1 and sum(occ.values()) == 1)]
        message, needed = disorder_message([crystal.name(i) for i in sites], [crystal.species[i] for i in sites])
        raise DisorderedStructureError(message, needed_tolerance=needed)
    symbols = [next(iter(occ)) for occ in crystal.species]
    z = np.array([_atomic_number(el) for el in symbols], dtype=np.int64)
    center, neighbor, dist = _graph_arrays(
        crystal.lattice, crystal.cart, config, lambda i: f"{crystal.name(i)} ({symbols[i]})"
    )
    return _data(z, center, neighbor, dist)


@lru_cache(maxsize=256)
def _atomic_number(symbol: str) -> int:
    z = Element(symbol).Z if Element.is_valid_symbol(symbol) else 0
    if not 1 <= z <= MAX_Z:
        raise UnsupportedElementError(
            f"Element '{symbol}' is not supported: the models know elements with Z = 1-{MAX_Z}."
        )
    return int(z)


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
    return _data(z, center, neighbor, dist).to_data()


def cif_to_graphs(data: str | bytes, config: GraphConfig | None = None) -> list[tuple[str, Data]]:
    """Parse a CIF and build one graph per data block.

    Returns:
        ``(block_name, graph)`` pairs in file order.

    Raises:
        StructureError: the first block that cannot be turned into a graph.
    """
    config = config or GraphConfig()
    out = []
    for block in read_blocks(data):
        if isinstance(block.value, Crystal):  # the gemmi reader's arrays: no Structure is built
            out.append((block.name, crystal_graph(block.value, config).to_data()))
        else:
            out.append((block.name, structure_to_graph(block.structure, config)))  # type: ignore[arg-type]
    return out
