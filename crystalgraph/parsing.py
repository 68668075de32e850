"""CIF text to pymatgen structures, with errors a person can act on."""

from __future__ import annotations

import io
import re
import warnings

from pymatgen.core import Structure

from .errors import InvalidCIFError

__all__ = ["parse_cif"]

_BLOCK_RE = re.compile(r"^\s*data_(\S*)", re.MULTILINE)


def _decode(data: str | bytes) -> str:
    if isinstance(data, str):
        text = data
    else:
        if b"\x00" in data[:8192]:
            raise InvalidCIFError("The file is binary, not a CIF text file.")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if not text.strip():
        raise InvalidCIFError("The file is empty.")
    return text


def parse_cif(data: str | bytes) -> list[tuple[str, Structure]]:
    """Parse every data block of a CIF into a structure, keeping the cell as written.

    Args:
        data: CIF text, or its bytes (UTF-8, falling back to Latin-1).

    Returns:
        ``(block_name, structure)`` pairs in file order; at least one. Disordered blocks
        are returned as they are (the graph builder rejects them with a clear error).

    Raises:
        InvalidCIFError: the input is empty, binary, or has no parseable structure.
    """
    text = _decode(data)
    names = _BLOCK_RE.findall(text)
    if not names:
        raise InvalidCIFError("No 'data_' block found: this does not look like a CIF file.")
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser(io.StringIO(text), occupancy_tolerance=1.0, site_tolerance=1e-4)
            structures = parser.parse_structures(primitive=False, on_error="ignore", check_occu=False)
    except Exception as exc:  # pymatgen raises many types on malformed input
        raise InvalidCIFError(f"The CIF could not be parsed: {exc}".rstrip()) from exc
    if not structures:
        raise InvalidCIFError("The CIF has no block with a readable cell and atom sites.")
    blocks = list(parser.as_dict())
    if len(blocks) != len(structures):
        # on_error="ignore" dropped some blocks; name the ones that parsed by position.
        blocks = [f"block{i + 1}" for i in range(len(structures))]
    return list(zip(blocks, structures, strict=True))
