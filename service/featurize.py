"""Structure files to crystal graphs: the work the parse pool does, one file per call.

These functions run in worker processes (pymatgen holds the GIL for the whole parse), so they
take and return plain picklable data: bytes in, numpy arrays and small records out. Errors
are returned, not raised, one per data block, so one bad block never hides the others.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from pymatgen.core import Structure

from crystalgraph import (
    OCCUPANCY_TOLERANCE,
    Crystal,
    DisorderedStructureError,
    GraphArrays,
    GraphConfig,
    ReadBlock,
    StructureError,
    crystal_graph,
    read_structures,
    structure_to_graph,
    summarize_structure,
)

from .schemas import StructureInfo

__all__ = ["Featurized", "init_worker", "featurize", "strict_error", "summarize"]


@dataclass(frozen=True)
class Featurized:
    """One data block of a CIF: its summary and graphs, or why it cannot be predicted.

    Attributes:
        block: The CIF data block name; ``None`` when the file itself could not be parsed.
        structure: Formula, sites, volume and elements; ``None`` when parsing failed.
        graphs: Graph per graph-settings fingerprint (empty on error).
        error: ``(code, detail)`` when the block cannot be predicted.
        warnings: ``(code, detail)`` notices of the reader (see ``crystalgraph.NOTICE_CODES``).
    """

    block: str | None
    structure: StructureInfo | None = None
    graphs: dict[str, GraphArrays] = field(default_factory=dict)
    error: tuple[str, str] | None = None
    warnings: tuple[tuple[str, str], ...] = ()


def init_worker(torch_threads: int = 1, nice: int = 0) -> None:
    """Pool initializer: one torch thread, quiet pymatgen, parser imported before the first job.

    Args:
        torch_threads: Threads torch may use in this worker.
        nice: Added to the worker's niceness (batch jobs' workers yield the CPU to interactive ones).
    """
    if nice:
        os.nice(nice)
    torch.set_num_threads(torch_threads)
    warnings.simplefilter("ignore")  # the reader records the warnings it passes on, whatever this filter
    import gemmi  # noqa: F401 - imported here so the first request does not pay for it


def summarize(structure: Structure | Crystal, block: str) -> StructureInfo:
    """What the answer says about the structure it predicted (:func:`crystalgraph.summarize_structure`)."""
    return StructureInfo(**asdict(summarize_structure(structure, block)))


def _graph(structure: Structure | Crystal, config: GraphConfig) -> GraphArrays:
    if isinstance(structure, Crystal):  # the CIF reader's arrays: no Structure, no torch Data
        return crystal_graph(structure, config)
    return GraphArrays.from_data(structure_to_graph(structure, config))


def strict_error(notices: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The error a block with reader warnings gets in strict mode: the first warning's code."""
    code, detail = notices[0]
    others = ", ".join(c for c, _ in notices[1:])
    more = f" (and {len(notices) - 1} more warning(s): {others})" if others else ""
    return code, f"Refused in strict mode: {detail}{more}"


def _error_detail(exc: StructureError, occupancy_tolerance: float) -> str:
    """The error's sentence, plus what the ``occupancy_tolerance`` setting could do about it."""
    detail = str(exc)
    needed = exc.needed_tolerance if isinstance(exc, DisorderedStructureError) else None
    if needed is not None and needed > occupancy_tolerance:
        detail += f" This service's tolerance is {occupancy_tolerance:g} (setting CRYSTAL_OCCUPANCY_TOLERANCE)."
    return detail


def _featurize_block(
    read: ReadBlock,
    configs: Sequence[GraphConfig],
    max_atoms: int,
    strict: bool = False,
    occupancy_tolerance: float = 0.0,
) -> Featurized:
    block = read.name
    notices = tuple((n.code, n.detail) for n in read.notices)
    if read.error is not None:
        return Featurized(block=block, error=(read.error.code, str(read.error)), warnings=notices)
    structure = read.value
    assert structure is not None
    try:
        info = summarize(structure, block)
    except Exception as exc:  # noqa: BLE001 - odd species make pymatgen raise many types
        return Featurized(block=block, error=("invalid_structure", f"The structure cannot be read: {exc}"))
    if strict and notices:
        return Featurized(block=block, structure=info, error=strict_error(notices), warnings=notices)
    if len(structure) > max_atoms:
        detail = f"The structure has {len(structure)} atoms; the limit is {max_atoms}."
        return Featurized(block=block, structure=info, error=("too_many_atoms", detail), warnings=notices)
    graphs: dict[str, GraphArrays] = {}
    try:
        for config in configs:
            fingerprint = config.fingerprint
            if fingerprint not in graphs:
                graphs[fingerprint] = _graph(structure, config)
    except StructureError as exc:
        return Featurized(
            block=block, structure=info, error=(exc.code, _error_detail(exc, occupancy_tolerance)), warnings=notices
        )
    except Exception as exc:  # noqa: BLE001 - a pymatgen failure on one block must not lose the rest
        return Featurized(
            block=block,
            structure=info,
            error=("invalid_structure", f"The graph could not be built: {exc}"),
            warnings=notices,
        )
    return Featurized(block=block, structure=info, graphs=graphs, warnings=notices)


def featurize(
    data: bytes,
    configs: Sequence[GraphConfig],
    max_atoms: int,
    filename: str | None = None,
    strict: bool = False,
    occupancy_tolerance: float = OCCUPANCY_TOLERANCE,
) -> list[Featurized]:
    """Read a structure file and build, for each structure, one graph per distinct graph fingerprint.

    Args:
        data: The file's bytes (CIF, POSCAR, extended XYZ, pymatgen or OPTIMADE JSON).
        configs: Graph settings of the models that will predict.
        max_atoms: Blocks with more atoms are refused (``too_many_atoms``), CIFs before their
            symmetry expansion is built.
        filename: Helps find the format (``.cif``, ``POSCAR``, ``.xyz``, ``.json``...).
        strict: A block with reader warnings becomes an error (the first warning's code).
        occupancy_tolerance: A CIF site of one element within this of full occupancy is read
            as fully occupied (``occupancy_rounded`` warning).

    Returns:
        One :class:`Featurized` per structure in file order, or a single one with
        ``block=None`` and an ``invalid_cif`` / ``invalid_structure_file`` error when the file
        cannot be read.
    """
    try:
        blocks = read_structures(data, filename=filename, max_atoms=max_atoms, occupancy_tolerance=occupancy_tolerance)
    except StructureError as exc:
        return [Featurized(block=None, error=(exc.code, str(exc)))]
    except Exception as exc:  # noqa: BLE001 - the reader wraps its parsers, but never crash the worker
        return [Featurized(block=None, error=("invalid_cif", f"The file could not be parsed: {exc}"))]
    return [_featurize_block(read, configs, max_atoms, strict, occupancy_tolerance) for read in blocks]
