"""Periodic crystal graphs: a pymatgen structure to a torch-geometric ``Data``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Batch, Data

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

__all__ = ["structure_to_graph", "cif_to_graphs", "collate", "neighbor_list"]


def _check_species(structure: Structure) -> np.ndarray:
    if len(structure) == 0:
        raise EmptyStructureError("The structure has no atoms.")
    if not structure.is_ordered:
        sites = [i for i, s in enumerate(structure) if not s.is_ordered]
        raise DisorderedStructureError(
            f"The structure is disordered (partial occupancy on {len(sites)} site(s), "
            f"first: site {sites[0]} = {structure[sites[0]].species}); only ordered structures "
            "can be predicted."
        )
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


def neighbor_list(structure: Structure, config: GraphConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``max_neighbors`` nearest periodic neighbours of every atom within the cutoff.

    Ties are broken deterministically (distance rounded to 1e-6 Å, then neighbour index, then
    image). Vectorized: one call to pymatgen's neighbour search, then a lexsort.

    Returns:
        ``(center, neighbor, distance)`` arrays of length ``E``, sorted by center then
        distance.

    Raises:
        OverlappingAtomsError: two atoms closer than ``config.min_distance``.
        IsolatedAtomError: an atom with no neighbour inside the cutoff.
    """
    n = len(structure)
    center, neighbor, images, dist = structure.get_neighbor_list(r=config.cutoff, numerical_tol=1e-8, exclude_self=True)
    if len(dist) and dist.min() < config.min_distance:
        k = int(np.argmin(dist))
        raise OverlappingAtomsError(
            f"Atoms {center[k]} ({structure[int(center[k])].specie}) and {neighbor[k]} "
            f"({structure[int(neighbor[k])].specie}) are {dist[k]:.3f} Å apart, closer than "
            f"{config.min_distance} Å."
        )
    images = np.asarray(images, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], neighbor, np.round(dist, 6), center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    counts = np.bincount(center, minlength=n)
    if (counts == 0).any():
        i = int(np.flatnonzero(counts == 0)[0])
        raise IsolatedAtomError(f"Atom {i} ({structure[i].specie}) has no neighbour within {config.cutoff} Å.")
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(center)) - np.repeat(first, counts)
    keep = rank < config.max_neighbors
    return center[keep].astype(np.int64), neighbor[keep].astype(np.int64), dist[keep]


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


def collate(graphs: Sequence[Data]) -> Batch:
    """Batch graphs into one disjoint graph (node indices offset, ``batch`` vector added)."""
    return Batch.from_data_list(list(graphs))
