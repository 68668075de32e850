"""Unpacking ``.zip`` and ``.tar``/``.tar.gz`` uploads in memory, with every size capped.

Nothing is written to disk, so member paths (``../x``) are only names. The guards against
archive bombs count what is actually decompressed, never the sizes an archive claims:

- at most ``max_files`` members (a cheap upper bound is checked before ``zipfile`` builds its
  member list),
- at most ``max_file_bytes`` read from one member (more marks that member too large),
- at most ``max_unpacked_bytes`` decompressed in all, tar headers and skipped members included;
  a :class:`Budget` can be shared by every archive of one request, so that eight archives do not
  get eight budgets,
- no sparse tar members (GNU or PAX sparse): their holes are produced by ``tarfile`` without
  being read from the archive, so no count of decompressed bytes could charge them.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Literal

from .errors import ArchiveInvalid, TooManyFiles

__all__ = ["Member", "Budget", "archive_kind", "unpack"]

_CHUNK = 1 << 16
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Member:
    """One regular file of an archive: its bytes, or ``data=None`` when it is over the size cap."""

    name: str
    data: bytes | None


def archive_kind(filename: str, data: bytes) -> Literal["zip", "tar"] | None:
    """``zip`` or ``tar`` (compressed or not) by content, else by name; ``None`` for anything else."""
    if data.startswith((_ZIP_MAGIC, _ZIP_EMPTY)):
        return "zip"
    if data.startswith(_GZIP_MAGIC) or data[257:262] == b"ustar":
        return "tar"
    name = filename.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def _skip(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith("__MACOSX/") or base.startswith("._") or base == ".DS_Store"


class Budget:
    """Counts decompressed bytes across the archives of one request; refuses past the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        """Charge ``n`` decompressed bytes.

        Raises:
            ArchiveInvalid: the budget is spent.
        """
        self.used += n
        if self.used > self.limit:
            raise ArchiveInvalid(
                f"The upload unpacks to more than {self.limit:,} bytes, the limit per request (all its archives "
                "together); refusing it (archive bomb guard)."
            )


class _CappedReader(io.RawIOBase):
    """A read-only stream that charges every byte it returns to a :class:`Budget`."""

    def __init__(self, inner: io.BufferedIOBase, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size if size is not None and size >= 0 else _CHUNK)
        self.budget.take(len(data))
        return data


def _read_member(fh: IO[bytes], max_bytes: int, budget: Budget) -> bytes | None:
    """Up to ``max_bytes`` of a member; ``None`` once it proves larger."""
    buf = bytearray()
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        budget.take(len(chunk))
        buf.extend(chunk)
        if len(buf) > max_bytes:
            return None


def _unpack_zip(data: bytes, max_file_bytes: int, max_files: int, budget: Budget) -> list[Member]:
    # Each member has a central-directory record starting with this signature: an upper bound
    # on the member count, checked before zipfile allocates one ZipInfo per record.
    if data.count(b"PK\x01\x02") > 2 * max_files + 16:
        raise TooManyFiles(f"The archive holds more than {max_files} files, the limit.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveInvalid(f"Not a readable zip archive: {exc}.") from exc
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir() and not _skip(i.filename)]
        if len(infos) > max_files:
            raise TooManyFiles(f"The archive holds {len(infos)} files; the limit is {max_files}.")
        members = []
        for info in infos:
            if info.flag_bits & 0x1:
                raise ArchiveInvalid(f"Member {info.filename!r} is encrypted; send an unencrypted archive.")
            try:
                with archive.open(info) as fh:
                    members.append(Member(info.filename, _read_member(fh, max_file_bytes, budget)))
            except ArchiveInvalid:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as exc:
                raise ArchiveInvalid(f"Member {info.filename!r} cannot be unpacked: {exc}.") from exc
    return members


def _unpack_tar(data: bytes, max_file_bytes: int, max_files: int, budget: Budget) -> list[Member]:
    raw: io.BufferedIOBase = io.BytesIO(data)
    if data.startswith(_GZIP_MAGIC):
        raw = gzip.GzipFile(fileobj=raw, mode="rb")
    members = []
    count = 0
    try:
        # Stream mode ("r|"): members are read in order, and skipped data still flows (and is
        # charged) through the capped reader.
        with tarfile.open(fileobj=_CappedReader(raw, budget), mode="r|") as archive:
            for info in archive:
                if info.issparse():
                    raise ArchiveInvalid(
                        f"Member {info.name!r} is a sparse file; send an archive of ordinary files (tar without -S)."
                    )
                if not info.isfile() or _skip(info.name):
                    continue
                count += 1
                if count > max_files:
                    raise TooManyFiles(f"The archive holds more than {max_files} files, the limit.")
                if info.size > max_file_bytes:
                    members.append(Member(info.name, None))
                    continue
                fh = archive.extractfile(info)
                members.append(Member(info.name, fh.read() if fh is not None else b""))
    except (ArchiveInvalid, TooManyFiles):
        raise
    except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ArchiveInvalid(f"Not a readable tar archive: {exc}.") from exc
    return members


def unpack(
    filename: str,
    data: bytes,
    *,
    max_file_bytes: int,
    max_files: int,
    max_unpacked_bytes: int,
    budget: Budget | None = None,
) -> list[Member]:
    """The regular files of an archive, in archive order.

    Directories, links and macOS metadata (``__MACOSX/``, ``._*``) are skipped.

    Args:
        filename: The archive's name (its kind is also read from its first bytes).
        data: The archive's bytes.
        max_file_bytes: Largest member kept; a larger one is listed with ``data=None``.
        max_files: Most members.
        max_unpacked_bytes: The budget when ``budget`` is not given.
        budget: The request's budget of decompressed bytes, shared with its other archives;
            by default a new one of ``max_unpacked_bytes``.

    Raises:
        ArchiveInvalid: not a readable archive, encrypted, holding a sparse member, or over
            the budget.
        TooManyFiles: more than ``max_files`` members.
    """
    kind = archive_kind(filename, data)
    budget = budget if budget is not None else Budget(max_unpacked_bytes)
    if kind == "zip":
        return _unpack_zip(data, max_file_bytes, max_files, budget)
    if kind == "tar":
        return _unpack_tar(data, max_file_bytes, max_files, budget)
    raise ArchiveInvalid(f"{filename!r} is not a .zip, .tar or .tar.gz archive.")
