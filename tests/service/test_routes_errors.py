"""Every error code against a live server: RFC 9457 problem+json, and the server stays up."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

MIB = 1 << 20


def _problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"].endswith(code)
    assert body["title"] and body["detail"]
    return body


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("garbage", "invalid_cif"),
        ("empty", "invalid_cif"),
        ("disordered", "disordered_structure"),
        ("unsupported", "unsupported_element"),
        ("isolated", "isolated_atom"),
        ("overlapping", "overlapping_atoms"),
    ],
)
def test_structure_errors_are_422_with_their_code(client: httpx.Client, cifs: dict, name: str, code: str) -> None:
    r = client.post("/v1/predict", files={"file": (f"{name}.cif", cifs[name])})
    _problem(r, 422, code)


def test_binary_file_is_invalid_cif(client: httpx.Client) -> None:
    r = client.post("/v1/predict", files={"file": ("x.cif", bytes(range(256)) * 8)})
    assert "binary" in _problem(r, 422, "invalid_cif")["detail"]


def test_too_many_atoms_at_the_default_limit_of_500(client: httpx.Client) -> None:
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl.make_supercell([5, 5, 3])  # 600 atoms
    r = client.post("/v1/predict", files={"file": ("big.cif", str(CifWriter(nacl)))})
    assert "600 atoms" in _problem(r, 422, "too_many_atoms")["detail"]


def test_file_too_large_at_the_default_2_mib(client: httpx.Client, cifs: dict) -> None:
    padding = "#" * (2 * MIB) + "\n"
    r = client.post("/v1/predict", files={"file": ("big.cif", cifs["nacl"] + padding)})
    _problem(r, 413, "file_too_large")
    r = client.post("/v1/predict", json={"cif": cifs["nacl"] + padding})
    _problem(r, 413, "file_too_large")
    # A file just under the limit is fine.
    r = client.post("/v1/predict", files={"file": ("ok.cif", cifs["nacl"] + "#" * (MIB // 2) + "\n")})
    assert r.status_code == 200, r.text


def test_size_is_enforced_on_chunked_uploads_without_content_length(client: httpx.Client, cifs: dict) -> None:
    def body() -> Iterator[bytes]:
        yield cifs["nacl"].encode()
        for _ in range(3):
            yield b"#" * MIB + b"\n"

    r = client.post("/v1/predict", content=body(), headers={"Content-Type": "chemical/x-cif"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    _problem(r, 413, "file_too_large")
    assert client.get("/healthz").status_code == 200


def test_too_many_files_at_the_default_1000(client: httpx.Client) -> None:
    files = [("files", (f"f{i}.cif", b"x")) for i in range(1001)]
    _problem(client.post("/v1/predict/batch", files=files), 413, "too_many_files")


def test_unknown_model(client: httpx.Client, cifs: dict) -> None:
    r = client.post("/v1/predict", params={"models": "nope"}, files={"file": ("n.cif", cifs["nacl"])})
    assert "cgcnn-formation-energy" in _problem(r, 404, "unknown_model")["detail"]
    r = client.post("/v1/predict", params={"models": "sr-cgcnn-band-gap@7"}, files={"file": ("n.cif", cifs["nacl"])})
    _problem(r, 404, "unknown_model")
    _problem(client.post("/v1/predict/batch", params={"models": "nope"}, files=[]), 404, "unknown_model")


def test_archive_invalid_for_a_corrupt_archive(client: httpx.Client, cifs: dict) -> None:
    corrupt = b"PK\x03\x04" + b"\x00garbage" * 50
    r = client.post("/v1/predict/batch", files={"files": ("set.zip", corrupt)})
    _problem(r, 400, "archive_invalid")
    truncated = io.BytesIO()
    with tarfile.open(fileobj=truncated, mode="w:gz") as tf:
        data = cifs["nacl"].encode() * 50
        info = tarfile.TarInfo("a.cif")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    r = client.post("/v1/predict/batch", files={"files": ("set.tar.gz", truncated.getvalue()[:300])})
    _problem(r, 400, "archive_invalid")


def test_bad_requests(client: httpx.Client, cifs: dict) -> None:
    _problem(client.post("/v1/predict", files={"note": (None, "no file here")}), 422, "invalid_request")
    both = {"cif": cifs["nacl"], "structure": cifs["nacl"]}
    _problem(client.post("/v1/predict", json=both), 422, "invalid_request")
    _problem(client.post("/v1/predict", json={"crystal": cifs["nacl"]}), 422, "invalid_request")
    _problem(client.post("/v1/predict", json=[1, 2]), 422, "invalid_request")
    two = [("file", ("a.cif", cifs["nacl"])), ("file", ("b.cif", cifs["cu"]))]
    _problem(client.post("/v1/predict", files=two), 422, "invalid_request")
    r = client.post("/v1/predict", content=b"<xml/>", headers={"Content-Type": "application/xml"})
    _problem(r, 415, "unsupported_media_type")
    _problem(client.post("/v1/predict/batch", json={"cif": cifs["nacl"]}), 415, "unsupported_media_type")
    _problem(client.get("/v1/nothing-here"), 404, "not_found")
    _problem(client.get("/v1/predict"), 405, "method_not_allowed")


def test_the_server_stays_up_and_correct_after_errors(client: httpx.Client, cifs: dict) -> None:
    for name in ("garbage", "isolated", "overlapping", "unsupported"):
        client.post("/v1/predict", files={"file": (f"{name}.cif", cifs[name])})
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    r = client.post("/v1/predict", files={"file": ("nacl.cif", cifs["nacl"])})
    assert r.status_code == 200 and set(r.json()["predictions"]) == {"formation_energy_per_atom", "band_gap"}


# -- the strict server: API key and small limits -------------------------------------------


def test_api_key_guards_v1_but_not_health(strict_server: object, cifs: dict) -> None:
    with httpx.Client(base_url=strict_server.url, timeout=60) as anon:  # type: ignore[attr-defined]
        _problem(anon.post("/v1/predict", files={"file": ("n.cif", cifs["nacl"])}), 401, "unauthorized")
        _problem(anon.get("/v1/models", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/readyz").status_code == 200
        assert anon.get("/metrics").status_code == 200


def test_limits_inside_a_batch_fail_only_their_file(strict_client: httpx.Client, cifs: dict) -> None:
    files = [
        ("files", ("big.cif", cifs["nacl"] + "#" * (40 << 10))),  # over 32 KiB
        ("files", ("many-atoms.cif", cifs["big"])),  # 64 atoms, limit 8
        ("files", ("nacl.cif", cifs["nacl"])),
    ]
    r = strict_client.post("/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x.get("error", {}).get("code") for x in results] == ["file_too_large", "too_many_atoms", None]
    assert results[2]["predictions"]["formation_energy_per_atom"]["model"] == "cgcnn-multitask"  # CRYSTAL_DEFAULTS


def test_too_many_files_and_request_too_large_on_small_limits(strict_client: httpx.Client, cifs: dict) -> None:
    files = [("files", (f"f{i}.cif", cifs["cu"])) for i in range(4)]
    _problem(strict_client.post("/v1/predict/batch", files=files), 413, "too_many_files")
    members = io.BytesIO()
    with zipfile.ZipFile(members, "w") as zf:
        for i in range(4):
            zf.writestr(f"f{i}.cif", cifs["cu"])
    r = strict_client.post("/v1/predict/batch", files={"files": ("four.zip", members.getvalue())})
    _problem(r, 413, "too_many_files")

    def body() -> Iterator[bytes]:
        yield b"PK\x03\x04"
        for _ in range(12):
            yield b"\x00" * (128 << 10)

    r = strict_client.post("/v1/predict/batch", content=body(), headers={"Content-Type": "application/zip"})
    _problem(r, 413, "request_too_large")


def test_zip_and_tar_bombs_are_archive_invalid(strict_client: httpx.Client) -> None:
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(2):
            zf.writestr(f"bomb{i}.cif", b"\x00" * (4 * MIB))  # compresses to ~4 KiB each
    assert len(zbuf.getvalue()) < 64 << 10
    r = strict_client.post("/v1/predict/batch", files={"files": ("bomb.zip", zbuf.getvalue())})
    assert "unpacks to more than" in _problem(r, 400, "archive_invalid")["detail"]

    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        info = tarfile.TarInfo("bomb.cif")
        info.size = 8 * MIB
        tf.addfile(info, io.BytesIO(b"\x00" * info.size))
    r = strict_client.post("/v1/predict/batch", files={"files": ("bomb.tar.gz", tbuf.getvalue())})
    _problem(r, 400, "archive_invalid")
