"""``POST /v1/predict/batch`` against a live server: files, archives, NDJSON, per-item errors."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable

import httpx

GOOD = ("nacl", "cu", "srtio3", "triclinic", "cscl", "big")


def _files(cifs: dict, names: list[str]) -> list[tuple[str, tuple[str, str]]]:
    return [("files", (f"{name}.cif", cifs[name])) for name in names]


def test_batch_answers_every_file_in_input_order_and_a_bad_file_fails_alone(client: httpx.Client, cifs: dict) -> None:
    names = ["nacl", "garbage", "cu", "disordered", "srtio3", "empty", "isolated"]
    r = client.post("/v1/predict/batch", files=_files(cifs, names))
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert [x["filename"] for x in results] == [f"{n}.cif" for n in names]
    assert [x["index"] for x in results] == list(range(len(names)))
    assert [x["ok"] for x in results] == [True, False, True, False, True, False, False]
    assert (body["n_ok"], body["n_failed"]) == (3, 4)
    codes = {x["filename"]: x["error"]["code"] for x in results if not x["ok"]}
    assert codes == {
        "garbage.cif": "invalid_cif",
        "disordered.cif": "disordered_structure",
        "empty.cif": "invalid_cif",
        "isolated.cif": "isolated_atom",
    }
    assert all(x["error"]["detail"] for x in results if not x["ok"])
    assert results[0]["structure"]["reduced_formula"] == "NaCl"


def test_a_structure_gets_the_same_answer_alone_or_in_a_batch(client: httpx.Client, cifs: dict) -> None:
    alone = {name: client.post("/v1/predict", files={"file": (f"{name}.cif", cifs[name])}).json() for name in GOOD}
    batch = client.post("/v1/predict/batch", files=_files(cifs, list(GOOD) * 3)).json()["results"]
    assert len(batch) == 3 * len(GOOD)
    for item in batch:
        ref = alone[item["filename"].removesuffix(".cif")]
        assert item["predictions"] == ref["predictions"]
        assert item["structure"] == ref["structure"]
        assert item["warnings"] == ref["warnings"]


def test_multi_block_cif_gives_one_result_per_block(client: httpx.Client, cifs: dict) -> None:
    r = client.post("/v1/predict/batch", files=_files(cifs, ["two_blocks", "cu"]))
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["two_blocks.cif#NaCl", "two_blocks.cif#SrTiO3", "cu.cif"]
    assert [x["index"] for x in results] == [0, 0, 1]
    assert [x["structure"]["reduced_formula"] for x in results] == ["NaCl", "SrTiO3", "Cu"]


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cifs/", "")  # a directory entry, skipped
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_zip_and_tar_gz_archives_are_unpacked(client: httpx.Client, cifs: dict, make_archive: Callable) -> None:
    members = {"cifs/nacl.cif": cifs["nacl"], "cifs/bad.cif": cifs["garbage"], "cifs/cu.cif": cifs["cu"]}
    for archive, name in ((_zip(members), "set.zip"), (make_archive(members, "tar.gz"), "set.tar.gz")):
        r = client.post("/v1/predict/batch", files={"files": (name, archive, "application/octet-stream")})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["filename"] for x in results] == list(members)
        assert [x["ok"] for x in results] == [True, False, True]
    raw = client.post("/v1/predict/batch", content=_zip(members), headers={"Content-Type": "application/zip"})
    assert [x["filename"] for x in raw.json()["results"]] == list(members)


def test_ndjson_streams_one_result_per_line(client: httpx.Client, cifs: dict) -> None:
    names = ["nacl", "garbage", "cu", "two_blocks"]
    with client.stream(
        "POST", "/v1/predict/batch", files=_files(cifs, names), headers={"Accept": "application/x-ndjson"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert len(lines) == 5
    assert sorted(x["index"] for x in lines) == [0, 1, 2, 3, 3]
    by_name = {x["filename"]: x for x in lines}
    assert by_name["garbage.cif"]["error"]["code"] == "invalid_cif"
    assert by_name["two_blocks.cif#SrTiO3"]["ok"] is True
    assert by_name["nacl.cif"]["predictions"]["band_gap"]["unit"] == "eV"
