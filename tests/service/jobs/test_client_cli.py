"""``crystal-predict`` (the installed console script) against live servers."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

CLI = Path(sys.executable).parent / "crystal-predict"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tree(tmp_path: Path, cifs: dict) -> Path:
    """A folder of CIFs at several depths, one of them bad, and a file that is not a CIF."""
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "nacl.cif").write_text(cifs["nacl"])
    (root / "a" / "b" / "cu.CIF").write_text(cifs["cu"])
    (root / "a" / "b" / "srtio3.cif").write_text(cifs["srtio3"])
    (root / "bad.cif").write_text(cifs["garbage"])
    (root / "notes.txt").write_text("not a structure")
    return root


def test_the_console_script_is_installed() -> None:
    assert CLI.is_file(), "run `pip install -e .` (make setup) to install crystal-predict"
    assert "screen" in _run("--help").stdout


def test_screen_a_folder_writes_one_csv_row_per_structure(jobs_server: Any, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    done = _run("screen", str(tree), "--url", jobs_server.url, "--out", str(out), "--poll", "0.1")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    by_file = {row["file"]: row for row in rows}
    assert set(by_file) == {"a/nacl.cif", "a/b/cu.CIF", "a/b/srtio3.cif", "bad.cif"}
    assert list(rows[0])[:3] == ["file", "formula", "n_sites"]
    assert by_file["a/b/srtio3.cif"]["formula"] == "SrTiO3" and by_file["a/b/srtio3.cif"]["n_sites"] == "5"
    assert -20 < float(by_file["a/nacl.cif"]["formation_energy_per_atom"]) < 20
    assert by_file["a/nacl.cif"]["band_gap_model"] == "sr-cgcnn-band-gap@2"
    assert by_file["bad.cif"]["error_code"] == "invalid_cif" and by_file["bad.cif"]["band_gap"] == ""
    assert "packed 4 CIFs" in done.stderr
    assert "file/s" in done.stderr and "100%" in done.stderr, "a progress bar with a rate"
    assert "--job" in done.stderr, "it says how to resume"
    assert not list(tmp_path.glob("*.part"))


def test_job_resumes_an_interrupted_download(
    jobs_server: Any, jobs_client: httpx.Client, tree: Path, tmp_path: Path, many_cifs: Callable, wait_job: Callable
) -> None:
    files = [("files", (name, text)) for name, text in many_cifs(9).items()]
    job = jobs_client.post("/v1/jobs", files=files).json()
    wait_job(jobs_client, job["id"])
    full = jobs_client.get(job["links"]["results"], params={"format": "csv"}).text
    lines = full.splitlines(keepends=True)
    out = tmp_path / "results.csv"
    part = tmp_path / f"results.csv.{job['id']}.part"
    part.write_text("".join(lines[:3]) + lines[3][:10])  # header, 2 rows and a cut row
    done = _run("screen", str(tree), "--url", jobs_server.url, "--job", job["id"], "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "resuming the download after 2 rows" in done.stderr
    assert out.read_text() == full
    assert not part.exists()


def test_screen_retries_when_connections_drop(
    jobs_server: Any, jobs_client: httpx.Client, tree: Path, tmp_path: Path, flaky_proxy: Callable
) -> None:
    port = int(jobs_server.url.rsplit(":", 1)[1])
    proxy = flaky_proxy(port, 3)  # the upload and its first two retries meet a dropped connection
    before = len(jobs_client.get("/v1/jobs", params={"limit": 500}).json()["jobs"])
    out = tmp_path / "results.csv"
    done = _run("screen", str(tree), "--url", proxy.url, "--out", str(out), "--poll", "0.1")
    assert done.returncode == 0, done.stderr
    assert proxy.dropped == 3
    retries = [line for line in done.stderr.splitlines() if line.startswith("POST /v1/jobs: ")]
    assert len(retries) == 3 and "retry 3/8" in retries[-1], done.stderr
    assert all(("ReadError" in r or "RemoteProtocolError" in r or "WriteError" in r) for r in retries), retries
    assert len(out.read_text().splitlines()) == 1 + 4
    assert len(jobs_client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]) == before + 1, "one job only"


def test_screen_gives_up_with_a_clear_error_when_nothing_listens(tree: Path, unused_port: int) -> None:
    done = _run("screen", str(tree), "--url", f"http://127.0.0.1:{unused_port}", "--retries", "2")
    assert done.returncode == 1
    assert "ConnectError" in done.stderr and "gave up after 2 retries" in done.stderr


def test_predict_one_file(jobs_server: Any, tree: Path) -> None:
    ok = _run("predict", str(tree / "a" / "nacl.cif"), "--url", jobs_server.url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("nacl.cif: NaCl (8 sites)")
    assert "formation_energy_per_atom" in ok.stdout and "eV/atom" in ok.stdout
    assert "cgcnn-formation-energy@1" in ok.stdout
    bad = _run("predict", str(tree / "bad.cif"), "--url", jobs_server.url)
    assert bad.returncode == 1 and "invalid_cif" in bad.stderr
