"""Hostile archives against a real server: sparse members, many archives in one request, big archive parts."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from service import Settings
from service.archives import unpack
from service.errors import ArchiveInvalid

MIB = 1 << 20


def sparse_tar(real_size: int = 2 << 30) -> bytes:
    """A GNU sparse member (``tar -S``): 512 stored bytes that unpack to ``real_size`` bytes, mostly holes."""
    info = tarfile.TarInfo("holes.cif")
    info.size = 512
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[386:398] = tarfile.itn(real_size - 512, 12, tarfile.GNU_FORMAT)  # one data block at the end
    header[398:410] = tarfile.itn(512, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)  # realsize
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)  # the header checksum, as tarfile writes it
    return bytes(header) + b"data_x\n".ljust(512, b"\n") + b"\0" * 1024


def zeros_zip(n: int, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"z{i}.cif", b"\0" * size)
    return buf.getvalue()


def test_sparse_member_is_refused_before_it_unpacks() -> None:
    data = sparse_tar()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:  # a real sparse member, as tarfile reads it
        assert tf.getmembers()[0].issparse() and tf.getmembers()[0].size == 2 << 30
    with pytest.raises(ArchiveInvalid, match="sparse"):
        unpack("x.tar", data, max_file_bytes=4 << 30, max_files=10, max_unpacked_bytes=4 << 30)


@pytest.fixture
def small_limits_server(live_server_factory: Callable[..., object], models_dir: Path) -> object:
    return live_server_factory(
        Settings(models_dir=models_dir, parse_workers=1, max_file_bytes=256 << 10, max_unpacked_bytes=8 * MIB)
    )


def test_hostile_archives_against_a_server(
    small_limits_server, cifs: dict[str, str], make_archive, tree_rss: Callable[[], int]
) -> None:
    with small_limits_server.client() as client:
        before = tree_rss()
        # A 2 GiB sparse member in a 2 KB upload: refused, the server does not grow.
        start = time.monotonic()
        response = client.post("/v1/predict/batch", content=sparse_tar(), headers={"Content-Type": "application/x-tar"})
        assert response.status_code == 400 and response.json()["code"] == "archive_invalid", response.text
        assert "sparse" in response.json()["detail"]
        # Four archives of 3 MiB each (12 members of 256 KiB, the per-file limit) in one request:
        # one budget of 8 MiB for the request, not 8 MiB each.
        files = [("files", (f"bomb{i}.zip", zeros_zip(12, 256 << 10))) for i in range(4)]
        response = client.post("/v1/predict/batch", files=files)
        assert response.status_code == 400 and response.json()["code"] == "archive_invalid", response.text
        assert "per request" in response.json()["detail"]
        assert time.monotonic() - start < 30
        assert tree_rss() - before < 200 * MIB
        # An archive part larger than the per-file limit (256 KiB) is an archive, not a too-large CIF.
        members = {f"set/{i:02d}.cif": cifs["nacl"] + "#" * (24 << 10) + "\n" for i in range(12)}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, text in members.items():
                zf.writestr(name, text)
        assert len(buf.getvalue()) > 256 << 10
        batch = client.post("/v1/predict/batch", files=[("files", ("set.zip", buf.getvalue()))]).json()
        assert batch["n_ok"] == 12 and batch["n_failed"] == 0, batch
        # ... while a CIF part over the limit is still refused as one.
        big = cifs["nacl"] + "#" * (257 << 10)
        batch = client.post("/v1/predict/batch", files=[("files", ("big.cif", big))]).json()
        assert batch["results"][0]["error"]["code"] == "file_too_large"
        start = time.monotonic()
        assert client.post("/v1/predict", json={"cif": cifs["nacl"]}).status_code == 200
        assert time.monotonic() - start < 15
