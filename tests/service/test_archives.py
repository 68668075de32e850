"""Archive unpacking in memory: members, skipped entries, caps against bombs."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable

import pytest

from service.archives import archive_kind, unpack
from service.errors import ArchiveInvalid, TooManyFiles

#: Builds an archive from ``{member name: bytes}`` (``_zip``, ``_tar``).
Pack = Callable[[dict[str, bytes]], bytes]

LIMITS = {"max_file_bytes": 1000, "max_files": 5, "max_unpacked_bytes": 100_000}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.cif")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return buf.getvalue()


def test_kind_by_content_then_name() -> None:
    assert archive_kind("x.bin", _zip({"a": b"1"})) == "zip"
    assert archive_kind("x.bin", _tar({"a": b"1"})) == "tar"
    assert archive_kind("x.bin", _tar({"a": b"1"}, mode="w")) == "tar"
    assert archive_kind("x.cif", b"data_x\n") is None
    assert archive_kind("x.zip", b"junk") == "zip"


@pytest.mark.parametrize("pack", [_zip, _tar])
def test_members_in_order_with_metadata_and_links_skipped(pack: Pack) -> None:
    members = {
        "a/one.cif": b"1",
        "../two.cif": b"22",
        "__MACOSX/._one.cif": b"x",
        "b/._x": b"y",
        "big.cif": b"z" * 1001,
    }
    out = unpack("set", pack(members), **LIMITS)
    assert [(m.name, m.data) for m in out] == [("a/one.cif", b"1"), ("../two.cif", b"22"), ("big.cif", None)]


@pytest.mark.parametrize("pack", [_zip, _tar])
def test_too_many_members(pack: Pack) -> None:
    with pytest.raises(TooManyFiles):
        unpack("set", pack({f"{i}.cif": b"x" for i in range(6)}), **LIMITS)


def test_zip_bomb_is_refused_on_bytes_actually_unpacked() -> None:
    # Each member is under the per-file cap but together they pass the unpacked cap.
    bomb = _zip({f"{i}.cif": b"\0" * 900 for i in range(5)})
    assert unpack("b.zip", bomb, **{**LIMITS, "max_unpacked_bytes": 5000}) and len(bomb) < 2000
    with pytest.raises(ArchiveInvalid, match="unpacks to more than"):
        unpack("b.zip", bomb, **{**LIMITS, "max_unpacked_bytes": 4000})


def test_tar_gz_bomb_is_refused_even_for_skipped_members() -> None:
    bomb = _tar({"huge.cif": b"\0" * 500_000})  # over the per-file cap: skipped, but still unpacked
    assert len(bomb) < 2000
    with pytest.raises(ArchiveInvalid, match="unpacks to more than"):
        unpack("b.tgz", bomb, **LIMITS)


def test_many_central_directory_records_are_refused_before_parsing() -> None:
    fake = b"PK\x03\x04" + b"PK\x01\x02" * 100
    with pytest.raises(TooManyFiles):
        unpack("x.zip", fake, **LIMITS)


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04 not really a zip", b"\x1f\x8b\x08\x00 broken gzip", _tar({"a.cif": b"x" * 500})[:60]],
)
def test_corrupt_archives(data: bytes) -> None:
    with pytest.raises(ArchiveInvalid):
        unpack("x.zip" if data.startswith(b"PK") else "x.tgz", data, **LIMITS)


def test_encrypted_zip_member_is_refused() -> None:
    data = bytearray(_zip({"a.cif": b"1"}))
    # Set the "encrypted" flag bit in the local header and the central directory record.
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.index(sig) + (6 if sig == b"PK\x03\x04" else 8)
        data[at] |= 0x1
    with pytest.raises(ArchiveInvalid, match="encrypted"):
        unpack("x.zip", bytes(data), **LIMITS)
