"""Notices: what a reader found doubtful in a file it could still read.

A notice is a warning, not an error: the structure was read, but a person should know how. Each
carries a stable ``code`` (listed in :data:`NOTICE_CODES`) and a sentence for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Notice", "NOTICE_CODES"]

#: Every code a reader notice may carry, with what it means.
NOTICE_CODES: dict[str, str] = {
    "composition_mismatch": "the cell read disagrees with the declared _chemical_formula_sum (and Z)",
    "symmetry_fallback": "a declared space group could not be applied: the structure was read as P 1",
    "sites_dropped": "atom-site rows that gave no atom (no element, or a missing coordinate)",
    "sites_merged": "atoms generated from different rows fell on one position and were counted once",
    "label_as_element": "an element read from a label, or a label naming another element than its type symbol",
    "occupancy_rounded": "a site's occupancy within the occupancy tolerance of 1 was read as 1 (fully occupied)",
    "fallback_parser": "the file is not well-formed CIF: it was read by pymatgen's more lenient parser",
    "parser_warning": "a warning of the fallback parser (pymatgen), passed on as it was written",
    "multiple_blocks": "a file with several structures, of which one answer was given",
}


@dataclass(frozen=True)
class Notice:
    """One warning about how a structure was read.

    Attributes:
        code: Stable machine-readable code (a key of :data:`NOTICE_CODES`).
        detail: What was found, for a person.
    """

    code: str
    detail: str
