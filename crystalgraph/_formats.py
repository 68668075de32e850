"""Structure formats other than CIF: VASP POSCAR, extended XYZ, pymatgen and OPTIMADE JSON.

Each reader returns ``(name, structure, notices)`` triples; :mod:`.io` checks them like CIF blocks.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from .errors import InvalidStructureFileError
from .notices import Notice

__all__ = ["read_poscar", "read_extxyz", "read_json"]

Found = list[tuple[str, Structure, list[Notice]]]
_KV_RE = re.compile(r"""(\w+)=("[^"]*"|'[^']*'|\{[^}]*\}|\S+)""")


def read_poscar(text: str) -> Found:
    """A VASP POSCAR/CONTCAR (VASP 5 with element names; VASP 4 needs them in the comment line)."""
    from pymatgen.io.vasp import Poscar

    poscar = Poscar.from_str(text, read_velocities=False)
    return [("poscar", poscar.structure, [])]


def _properties(spec: str) -> dict[str, tuple[int, int]]:
    """``species:S:1:pos:R:3`` -> ``{"species": (0, 1), "pos": (1, 3)}`` (column start, width)."""
    parts = spec.split(":")
    if len(parts) % 3:
        raise InvalidStructureFileError(f"Malformed extended XYZ Properties={spec!r}.")
    out, col = {}, 0
    for name, _, width in zip(parts[0::3], parts[1::3], parts[2::3], strict=True):
        out[name.lower()] = (col, int(width))
        col += int(width)
    return out


def read_extxyz(text: str) -> Found:
    """Extended XYZ: each frame (count line, ``Lattice="..."`` comment line, atom lines) is a structure."""
    lines = text.splitlines()
    found: Found = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError as exc:
            raise InvalidStructureFileError(f"Extended XYZ line {i + 1}: expected an atom count.") from exc
        if n <= 0 or i + 2 + n > len(lines):
            raise InvalidStructureFileError(f"Extended XYZ frame at line {i + 1}: {n} atoms announced, not present.")
        info = {k.lower(): v.strip("\"'") for k, v in _KV_RE.findall(lines[i + 1])}
        if "lattice" not in info:
            raise InvalidStructureFileError(
                f'Extended XYZ frame {len(found) + 1} has no Lattice="...": a periodic cell is needed.'
            )
        matrix = np.array([float(x) for x in info["lattice"].split()]).reshape(3, 3)
        props = _properties(info.get("properties", "species:S:1:pos:R:3"))
        if "species" not in props or "pos" not in props or props["pos"][1] != 3:
            raise InvalidStructureFileError("Extended XYZ Properties must include species:S:1 and pos:R:3.")
        species, coords = [], []
        for line in lines[i + 2 : i + 2 + n]:
            cols = shlex.split(line) if '"' in line else line.split()
            species.append(cols[props["species"][0]])
            start = props["pos"][0]
            coords.append([float(x) for x in cols[start : start + 3]])
        structure = Structure(Lattice(matrix), species, coords, coords_are_cartesian=True)
        found.append((f"frame{len(found) + 1}", structure, []))
        i += 2 + n
    return found


def _optimade(entry: dict[str, Any], index: int) -> tuple[str, Structure, list[Notice]]:
    attrs = entry.get("attributes", entry)
    matrix = np.array(attrs["lattice_vectors"], dtype=float)
    positions = np.array(attrs["cartesian_site_positions"], dtype=float)
    names = attrs["species_at_sites"]
    kinds = {s["name"]: s for s in attrs.get("species") or []}
    species: list[Any] = []
    for name in names:
        kind = kinds.get(name)
        if kind is None:
            species.append(name)
        else:
            symbols, conc = kind["chemical_symbols"], kind.get("concentration") or [1.0]
            species.append({s: c for s, c in zip(symbols, conc, strict=True) if s != "vacancy"})
    structure = Structure(Lattice(matrix), species, positions, coords_are_cartesian=True)
    return (str(entry.get("id") or f"structure{index + 1}"), structure, [])


def read_json(text: str) -> Found:
    """A pymatgen ``Structure.as_dict()`` or an OPTIMADE structure (entry, list, or ``{"data": ...}``)."""
    doc = json.loads(text)
    if isinstance(doc, dict) and "data" in doc:
        doc = doc["data"]
    entries = doc if isinstance(doc, list) else [doc]
    found: Found = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidStructureFileError("The JSON holds no structure object.")
        if "lattice" in entry and "sites" in entry:
            found.append((str(entry.get("id") or f"structure{index + 1}"), Structure.from_dict(entry), []))
        elif "lattice_vectors" in entry.get("attributes", entry):
            found.append(_optimade(entry, index))
        else:
            raise InvalidStructureFileError(
                "The JSON is neither a pymatgen Structure (lattice, sites) nor an OPTIMADE structure "
                "(attributes.lattice_vectors, cartesian_site_positions, species_at_sites)."
            )
    return found
