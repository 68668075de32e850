"""The cross-checks of a CIF block that become notices, and how element symbols are read.

Symbols are read as pymatgen reads them (special water/hydroxyl names, then the first two
letters, then the first), so that ordinary files give the elements pymatgen gave.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import gemmi
from pymatgen.core import Element

from ._symmetry import Symmetry
from .notices import Notice

__all__ = ["number", "parse_symbol", "is_element", "label_notice", "composition_notice", "symmetry_notice"]

_SPECIAL = {"Hw": "H", "Ow": "O", "Wat": "O", "wat": "O", "OH": "O", "OH2": "O", "NO3": "N"}
_SPECIAL_RE = re.compile("|".join(_SPECIAL))
_WORD_RE = re.compile(r"w?[A-Z][a-z]*")
_UNCERTAINTY_RE = re.compile(r"\(.+\)*")
_FORMULA_RE = re.compile(r"([A-Z][a-z]?)\s*([0-9]*\.?[0-9]*)")


def number(text: str | None) -> float:
    """A CIF number (``0.123(4)``, ``.5``); NaN for ``?``/``.``/missing or unreadable text."""
    if text is None or gemmi.cif.is_null(text):
        return math.nan
    value = gemmi.cif.as_number(text)
    if math.isnan(value):
        try:
            value = float(_UNCERTAINTY_RE.sub("", gemmi.cif.as_string(text)))
        except ValueError:
            return math.nan
    return value


@lru_cache(maxsize=512)
def is_element(symbol: str) -> bool:
    return Element.is_valid_symbol(symbol)


def parse_symbol(text: str) -> str | None:
    """The element a type symbol or label names, by pymatgen's rules (``None``: no element)."""
    if not text:
        return None
    special = _SPECIAL_RE.match(text)
    if special:
        return _SPECIAL[special.group()]
    if is_element(text[:2].title()):
        return text[:2].title()
    if is_element(text[0].upper()):
        return text[0].upper()
    word = _WORD_RE.match(text)
    return word.group() if word else None


def label_notice(label: str, type_symbol: str | None, element: str) -> Notice | None:
    """``label_as_element`` when a label's letters name another element, or were guessed from capitals."""
    if type_symbol is not None:
        from_label = parse_symbol(label)
        if from_label and from_label != element and is_element(from_label):
            return Notice(
                "label_as_element",
                f"Site '{label}' has type symbol '{type_symbol}' ({element}) but its label reads as "
                f"{from_label}; the type symbol was used.",
            )
        return None
    two = label[:2]
    if len(two) == 2 and two.isalpha() and two.isupper() and element == two.title():
        return Notice(
            "label_as_element",
            f"Site '{label}' has no type symbol; its label was read as {element}, but the capitals "
            f"'{two}' may mean {two[0]} then {two[1]}. Add _atom_site_type_symbol to be sure.",
        )
    special = _SPECIAL_RE.match(label)
    if special is not None and special.group() in {"OH", "OH2", "NO3"}:
        return Notice(
            "label_as_element",
            f"Site '{label}' has no type symbol; it was read as {element} alone (the other atoms its "
            "label names are not sites of the structure).",
        )
    return None


def _formula(text: str) -> dict[str, float] | None:
    text = gemmi.cif.as_string(text).strip()
    counts: dict[str, float] = {}
    pos = 0
    for match in _FORMULA_RE.finditer(text):
        if text[pos : match.start()].strip():
            return None  # brackets, charges or words: not a sum formula we can compare
        counts[match.group(1)] = counts.get(match.group(1), 0.0) + float(match.group(2) or 1)
        pos = match.end()
    if text[pos:].strip() or not counts or not all(is_element(el) for el in counts):
        return None
    return counts


def composition_notice(block: gemmi.cif.Block, found: dict[str, float]) -> Notice | None:
    raw = block.find_value("_chemical_formula_sum") or block.find_value("_chemical_formula.sum")
    if raw is None or gemmi.cif.is_null(raw):
        return None
    declared = _formula(raw)
    if declared is None:
        return None
    z = number(block.find_value("_cell_formula_units_Z") or block.find_value("_cell.formula_units_Z"))
    per_cell = sum(found.values())

    def same(expected: dict[str, float]) -> bool:
        return set(expected) == set(found) and all(abs(found[el] - n) <= 1e-2 * max(n, 1) for el, n in expected.items())

    if math.isfinite(z) and z > 0:
        # The standard says sum x Z is the cell; pymatgen writes the cell's contents as the sum.
        ok = same({el: n * z for el, n in declared.items()}) or same(declared)
    else:
        total = sum(declared.values())
        ok = set(declared) == set(found) and all(
            abs(found[el] / per_cell - n / total) <= 1e-3 for el, n in declared.items()
        )
    if ok:
        return None

    def show(counts: dict[str, float]) -> str:
        return " ".join(f"{el}{n:g}" for el, n in sorted(counts.items()))

    z_text = f" with Z = {z:g}" if math.isfinite(z) and z > 0 else ""
    return Notice(
        "composition_mismatch",
        f"The cell read holds {show(found)}, but the file declares _chemical_formula_sum "
        f"'{gemmi.cif.as_string(raw).strip()}'{z_text}: sites or symmetry may be missing.",
    )


def symmetry_notice(sym: Symmetry) -> Notice | None:
    if sym.n_ops == 1 and not sym.declared_p1:
        why = f" ({sym.problem})" if sym.problem else ""
        return Notice(
            "symmetry_fallback",
            f"The file declares space group {sym.declared!r} but only the identity could be applied{why}: "
            "the structure was read as P 1, and atoms generated by symmetry may be missing.",
        )
    if sym.problem and sym.n_ops == 1:
        return Notice("symmetry_fallback", f"The structure was read as P 1: {sym.problem}.")
    return None
