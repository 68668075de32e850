"""What ``screen`` uploads: a folder's CIFs packed into one ``.tar.gz``, or an archive as it is."""

from __future__ import annotations

import tarfile
from pathlib import Path

__all__ = ["find_cifs", "pack", "archive_media_type"]

_ARCHIVES = {
    ".zip": "application/zip",
    ".tar.gz": "application/gzip",
    ".tgz": "application/gzip",
    ".tar": "application/x-tar",
}


def archive_media_type(path: Path) -> str | None:
    """The upload content type of an archive, by its name; ``None`` for anything else."""
    name = path.name.lower()
    return next((media for suffix, media in _ARCHIVES.items() if name.endswith(suffix)), None)


#: Structure files a folder scan picks up (JSON is left out: a folder's JSON files are rarely structures).
_STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".xyz", ".extxyz"}


def _is_structure(path: Path) -> bool:
    name = path.name.lower()
    return path.suffix.lower() in _STRUCTURE_SUFFIXES or name.startswith(("poscar", "contcar"))


def find_cifs(folder: Path) -> list[Path]:
    """Every structure file under ``folder`` (any depth): ``*.cif``, ``*.vasp``, ``POSCAR*``, ``*.xyz``..."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and _is_structure(p))


def pack(folder: Path, files: list[Path], dest: Path) -> None:
    """Write ``files`` into the gzipped tar ``dest``, named by their path relative to ``folder``.

    The names become the ``file`` column of the results.
    """
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
