"""Exceptions raised while turning a crystal into a graph.

Every exception carries a stable machine-readable ``code`` that the service maps to
an API error; the message is a sentence meant for a person.
"""

from __future__ import annotations

__all__ = [
    "StructureError",
    "InvalidCIFError",
    "EmptyStructureError",
    "DisorderedStructureError",
    "UnsupportedElementError",
    "IsolatedAtomError",
    "OverlappingAtomsError",
    "InvalidCellError",
    "TooManyAtomsError",
    "InvalidStructureFileError",
]


class StructureError(ValueError):
    """Base class: a structure that cannot be turned into a crystal graph."""

    code = "invalid_structure"


class InvalidCIFError(StructureError):
    """The input is not a parseable CIF (empty, binary, or malformed)."""

    code = "invalid_cif"


class InvalidStructureFileError(StructureError):
    """A structure file in another format than CIF (POSCAR, extended XYZ, JSON) that cannot be read."""

    code = "invalid_structure_file"


class InvalidCellError(StructureError):
    """A cell or atom positions no crystal can have (non-positive lengths, infinite coordinates...)."""

    code = "invalid_cell"


class TooManyAtomsError(StructureError):
    """The unit cell holds more atoms than the caller's limit (found before it is expanded)."""

    code = "too_many_atoms"


class EmptyStructureError(StructureError):
    """The structure has no sites."""

    code = "empty_structure"


class DisorderedStructureError(StructureError):
    """A site has partial occupancy or mixed species.

    Attributes:
        needed_tolerance: The smallest occupancy tolerance under which every disordered site
            would have been read as fully occupied; ``None`` when no small one would.
    """

    code = "disordered_structure"

    def __init__(self, message: str, needed_tolerance: float | None = None) -> None:
        super().__init__(message)
        self.needed_tolerance = needed_tolerance


class UnsupportedElementError(StructureError):
    """An element is outside the element feature table (Z = 1-100) or not an element."""

    code = "unsupported_element"


class IsolatedAtomError(StructureError):
    """An atom has no neighbour within the cutoff radius."""

    code = "isolated_atom"


class OverlappingAtomsError(StructureError):
    """Two atoms are closer than the minimum allowed distance."""

    code = "overlapping_atoms"
