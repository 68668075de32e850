"""What ``screen`` uploads (a folder's CIFs packed into one ``.tar.gz``, or an archive as it is) and its key."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

__all__ = ["find_cifs", "pack", "archive_media_type", "submission_key"]

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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def submission_key(path: Path, models: str | None, files: list[Path] | None = None) -> str:
    """The ``Idempotency-Key`` of a submission: a hash of the inputs' contents and the options.

    The same folder (same relative names and bytes) or archive (same bytes) with the same
    models gives the same key, wherever and whenever it is run, so a rerun after Ctrl-C
    finds the job it submitted instead of starting a second one. Another file, a changed
    byte or other models give another key.

    Args:
        path: The folder or archive given to ``screen``.
        models: The ``--models`` option (``None``: the service's defaults).
        files: The folder's structure files (default: :func:`find_cifs`); ignored for an archive.
    """
    digest = hashlib.sha256(f"crystal-predict submission 1\nmodels={models or ''}\n".encode())
    if path.is_dir():
        for file in files if files is not None else find_cifs(path):
            digest.update(f"{file.relative_to(path).as_posix()}\0{_sha256_file(file)}\n".encode())
    else:
        digest.update(f"archive\0{_sha256_file(path)}\n".encode())
    return digest.hexdigest()
