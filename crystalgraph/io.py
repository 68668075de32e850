"""Structure files to pymatgen structures, with the notices a person should see.

:func:`read_structures` reads CIF (gemmi; pymatgen's ``CifParser`` for files gemmi finds
malformed, with its warnings kept), VASP POSCAR/CONTCAR, extended XYZ (each frame a structure),
pymatgen ``Structure`` JSON and OPTIMADE structure JSON. The format is given, or found from the
file name, else from the content. Every structure passes the same checks before it is returned:
a sane cell, finite coordinates, a plausible volume per atom and at most ``max_atoms`` atoms
(counted before a CIF's symmetry expansion is built).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import gemmi
from pymatgen.core import Structure

from ._cif import OCCUPANCY_TOLERANCE, read_block
from ._formats import read_extxyz, read_json, read_poscar
from .checks import check_coordinates, check_lattice, check_volume_per_atom
from .crystal import Crystal
from .errors import InvalidCIFError, InvalidStructureFileError, StructureError, TooManyAtomsError
from .notices import Notice

__all__ = ["FORMATS", "OCCUPANCY_TOLERANCE", "ReadBlock", "detect_format", "read_structures", "check_structure"]

#: Formats :func:`read_structures` accepts.
FORMATS = ("cif", "poscar", "extxyz", "pymatgen-json", "optimade-json")
#: Largest malformed CIF handed to pymatgen's parser (its tokenizer is quadratic on some inputs).
FALLBACK_MAX_BYTES = 32 << 10

_BLOCK_RE = re.compile(r"^[ \t]*data_(\S*)", re.MULTILINE | re.IGNORECASE)
_NAMES = {
    "cif": ("cif", "mcif"),
    "poscar": ("vasp", "poscar", "contcar"),
    "extxyz": ("xyz", "extxyz"),
    "json": ("json",),
}


@dataclass(frozen=True)
class ReadBlock:
    """One structure of a file (a CIF data block, an XYZ frame...), or why it cannot be read.

    Attributes:
        name: Block name (CIF), ``frameN`` (XYZ), or the format's name for one-structure files.
        value: What the reader built: a :class:`Crystal` (arrays; the gemmi CIF reader) or a
            pymatgen ``Structure`` (other formats, the fallback parser); ``None`` with ``error``.
        notices: Warnings about how it was read.
        error: Why this block gave no structure.
    """

    name: str
    value: Structure | Crystal | None
    notices: tuple[Notice, ...] = ()
    error: StructureError | None = None

    @cached_property
    def structure(self) -> Structure | None:
        """The pymatgen ``Structure`` (built on first use from a :class:`Crystal`)."""
        return self.value.to_structure() if isinstance(self.value, Crystal) else self.value

    @cached_property
    def crystal(self) -> Crystal | None:
        """The structure as arrays (converted on first use from a ``Structure``)."""
        return Crystal.from_structure(self.value) if isinstance(self.value, Structure) else self.value


def _decode(data: str | bytes) -> str:
    if isinstance(data, str):
        text = data
    else:
        if b"\x00" in data[:8192]:
            raise InvalidCIFError("The file is binary, not a structure text file.")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise InvalidCIFError("The file is empty.")
    return text


def detect_format(text: str, filename: str | None = None) -> str:
    """The format of a file: from its name's extension or stem, else from its first characters."""
    name = (filename or "").rsplit("/", 1)[-1].lower()
    stem, _, ext = name.rpartition(".")
    for fmt, exts in _NAMES.items():
        if ext in exts and stem:
            return _json_kind(text) if fmt == "json" else fmt
    if name.startswith(("poscar", "contcar")):
        return "poscar"
    head = text.lstrip()[:1]
    if head in "{[" and head:
        return _json_kind(text)
    if _BLOCK_RE.search(text, 0, 1 << 20):
        return "cif"
    lines = text.lstrip().splitlines()[:8]
    if len(lines) > 1 and lines[0].strip().isdigit() and "lattice=" in lines[1].lower():
        return "extxyz"
    if len(lines) >= 7 and _floats(lines[1], 1) and all(_floats(line, 3) for line in lines[2:5]):
        return "poscar"
    return "cif"  # what the service always read: a file of no known shape gets the CIF reader's error


def _floats(line: str, n: int) -> bool:
    parts = line.split()
    if len(parts) < n:
        return False
    try:
        [float(p) for p in parts[:n]]
    except ValueError:
        return False
    return True


def _json_kind(text: str) -> str:
    return "optimade-json" if '"attributes"' in text or '"lattice_vectors"' in text else "pymatgen-json"


def check_structure(structure: Structure, max_atoms: int | None) -> None:
    """The checks every format's structure passes (CIFs pass them before expansion).

    Raises:
        TooManyAtomsError, InvalidCellError.
    """
    if max_atoms is not None and len(structure) > max_atoms:
        raise TooManyAtomsError(f"The structure has {len(structure)} atoms; the limit is {max_atoms}.")
    check_lattice(structure.lattice.matrix)
    check_coordinates(structure.frac_coords)
    check_volume_per_atom(structure.volume, len(structure))


def _checked(name: str, structure: Structure, notices: Sequence[Notice], max_atoms: int | None) -> ReadBlock:
    try:
        check_structure(structure, max_atoms)
    except StructureError as exc:
        return ReadBlock(name, None, tuple(notices), exc)
    return ReadBlock(name, structure, tuple(notices))


def _has_structure_data(block: gemmi.cif.Block) -> bool:
    return any(
        len(block.find_values(tag)) > 0
        for tag in ("_cell_length_a", "_cell.length_a", "_atom_site_label", "_atom_site.label")
    )


def _blocks_of(doc: gemmi.cif.Document, max_atoms: int | None, occupancy_tolerance: float) -> list[ReadBlock]:
    out: list[ReadBlock] = []
    for block in doc:
        if not _has_structure_data(block):
            continue  # e.g. a data_global block with only publication details
        try:
            crystal, notices = read_block(block, max_atoms, occupancy_tolerance)
        except StructureError as exc:
            out.append(ReadBlock(block.name, None, (), exc))
        else:
            out.append(ReadBlock(block.name, crystal, tuple(notices)))
    return out


def _read_cif(text: str, max_atoms: int | None, occupancy_tolerance: float) -> list[ReadBlock]:
    try:
        doc = gemmi.cif.read_string(text)
    except (ValueError, RuntimeError) as exc:
        if "data_" not in text.lower():  # not a CIF at all: say so rather than how a parser failed
            raise InvalidCIFError("No 'data_' block found: this does not look like a CIF file.") from exc
        return _read_cif_by_block(text, str(exc), max_atoms, occupancy_tolerance)
    out = _blocks_of(doc, max_atoms, occupancy_tolerance)
    if not out:
        if len(doc) == 0:
            raise InvalidCIFError("No 'data_' block found: this does not look like a CIF file.")
        raise InvalidCIFError("The CIF has no block with a unit cell and atom sites.")
    return out


def _read_cif_by_block(text: str, reason: str, max_atoms: int | None, occupancy_tolerance: float) -> list[ReadBlock]:
    """A file gemmi refuses, read one ``data_`` block at a time, so a broken block costs only itself.

    Each block is given to gemmi alone (line numbers kept), then to pymatgen's lenient parser;
    a block neither can read keeps its name and gets its own error. A file of one block is the
    whole file: its error is the file's.
    """
    starts = [m.start() for m in _BLOCK_RE.finditer(text)]
    if len(starts) <= 1:
        return _read_cif_pymatgen(text, reason, max_atoms)
    out: list[ReadBlock] = []
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        match = _BLOCK_RE.match(text, start)
        name = match.group(1) if match else ""
        chunk = "\n" * text.count("\n", 0, start) + text[start:end]  # keeps the parsers' line numbers
        try:
            try:
                found = _blocks_of(gemmi.cif.read_string(chunk), max_atoms, occupancy_tolerance)
            except (ValueError, RuntimeError) as exc:
                found = _read_cif_pymatgen(chunk, str(exc), max_atoms, names=[name])
        except StructureError as exc:
            found = [ReadBlock(name, None, (), exc)]
        out.extend(found)
    if not out:
        raise InvalidCIFError(f"The CIF is malformed ({reason}) and has no block with a unit cell and atom sites.")
    return out


def _pymatgen_notice(message: str) -> Notice:
    if "Defaulting to P1" in message:
        return Notice("symmetry_fallback", f"pymatgen: {message}")
    if " parsed as " in message:
        return Notice("label_as_element", f"pymatgen: {message}")
    return Notice("parser_warning", f"pymatgen: {message}")


def _read_cif_pymatgen(
    text: str, reason: str, max_atoms: int | None, names: list[str] | None = None
) -> list[ReadBlock]:
    """Pymatgen's lenient parser for a CIF gemmi refuses; every warning it raises becomes a notice.

    Args:
        text: The CIF text (one block, or the whole file).
        reason: Why gemmi refused it (quoted in the notice and in errors).
        max_atoms: Structures with more atoms are refused.
        names: The block names, when the caller knows them (one block at a time).
    """
    if len(text) > FALLBACK_MAX_BYTES:
        raise InvalidCIFError(f"The CIF is malformed: {reason}.")
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parser = CifParser.from_str(text, occupancy_tolerance=1.0, site_tolerance=1e-4)
            structures = parser.parse_structures(primitive=False, on_error="warn", check_occu=False)
    except Exception as exc:
        raise InvalidCIFError(f"The CIF is malformed ({reason}) and could not be parsed: {exc}".rstrip()) from exc
    if not structures:
        raise InvalidCIFError(f"The CIF is malformed ({reason}) and has no readable structure.")
    messages: list[str] = []
    for message in [str(w.message) for w in caught] + list(getattr(parser, "warnings", [])):
        for line in message.replace("Issues encountered while parsing CIF: ", "").split("\n"):
            if line.strip() and line.strip() not in messages:
                messages.append(line.strip())
    notices = [Notice("fallback_parser", f"The file is not well-formed CIF ({reason}); it was read leniently.")]
    notices += [_pymatgen_notice(m) for m in messages]
    names = names or list(parser.as_dict())
    if len(names) != len(structures):
        names = [f"block{i + 1}" for i in range(len(structures))]
    return [_checked(n, s, notices, max_atoms) for n, s in zip(names, structures, strict=True)]


def read_structures(
    data: str | bytes,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    max_atoms: int | None = None,
    occupancy_tolerance: float = OCCUPANCY_TOLERANCE,
) -> list[ReadBlock]:
    """Every structure of a file, in file order, each with its notices or its error.

    Args:
        data: The file's text or bytes (UTF-8, falling back to Latin-1).
        filename: Used to find the format (``.cif``, ``POSCAR``, ``.vasp``, ``.xyz``, ``.json``).
        fmt: One of :data:`FORMATS` (or ``json``) to skip detection.
        max_atoms: Structures with more atoms are refused (``too_many_atoms``), CIFs before
            their symmetry expansion is built.
        occupancy_tolerance: A CIF site of one element whose occupancy is within this of 1 is
            read as fully occupied (an ``occupancy_rounded`` notice says so).

    Returns:
        At least one :class:`ReadBlock`.

    Raises:
        InvalidCIFError: a CIF (or a file of unknown format) that holds no readable structure.
        InvalidStructureFileError: another format's file that cannot be read.
    """
    text = _decode(data)
    fmt = (fmt or detect_format(text, filename)).lower()
    if fmt == "json":
        fmt = _json_kind(text)
    if fmt == "cif":
        return _read_cif(text, max_atoms, occupancy_tolerance)
    if fmt not in FORMATS:
        raise InvalidStructureFileError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    readers = {"poscar": read_poscar, "extxyz": read_extxyz, "pymatgen-json": read_json, "optimade-json": read_json}
    try:
        found = readers[fmt](text)
    except StructureError:
        raise
    except Exception as exc:
        raise InvalidStructureFileError(f"The {fmt} file could not be read: {exc}".rstrip()) from exc
    if not found:
        raise InvalidStructureFileError(f"The {fmt} file holds no structure.")
    return [_checked(name, s, notices, max_atoms) for name, s, notices in found]
