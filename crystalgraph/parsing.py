"""CIF text to pymatgen structures: the short form of :func:`crystalgraph.read_structures`."""

from __future__ import annotations

from pymatgen.core import Structure

from .io import ReadBlock, read_structures

__all__ = ["parse_cif"]


def parse_cif(data: str | bytes, max_atoms: int | None = None) -> list[tuple[str, Structure]]:
    """Parse every data block of a CIF into a structure, keeping the cell as written.

    Notices are dropped here; call :func:`crystalgraph.read_structures` to see them.

    Args:
        data: CIF text, or its bytes (UTF-8, falling back to Latin-1).
        max_atoms: Blocks with more atoms are refused before their expansion is built.

    Returns:
        ``(block_name, structure)`` pairs in file order; at least one. Disordered blocks
        are returned as they are (the graph builder rejects them with a clear error).

    Raises:
        StructureError: the input is empty, binary, or has no parseable structure
            (``InvalidCIFError``); or its first unreadable block's error when none can be read.
    """
    return [(b.name, b.structure) for b in read_blocks(data, max_atoms)]  # type: ignore[misc]


def read_blocks(data: str | bytes, max_atoms: int | None = None) -> list[ReadBlock]:
    """The readable blocks of a CIF (see :func:`parse_cif`), as the reader returned them.

    Raises:
        StructureError: as :func:`parse_cif`.
    """
    blocks = read_structures(data, fmt="cif", max_atoms=max_atoms)
    good = [b for b in blocks if b.value is not None]
    if not good:
        error = blocks[0].error
        raise error if error is not None else ValueError("no structure")
    return good
