"""``crystal-predict`` (the installed console script) against live servers."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
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
    # --new: the tree may have been submitted by another test (the same files would re-attach to that job)
    done = _run("screen", str(tree), "--url", proxy.url, "--out", str(out), "--poll", "0.1", "--new")
    assert done.returncode == 0, done.stderr
    assert proxy.dropped == 3
    retries = [line for line in done.stderr.splitlines() if line.startswith("POST /v1/jobs: ")]
    assert len(retries) == 3 and "retry 3/8" in retries[-1], done.stderr
    assert all(("ReadError" in r or "RemoteProtocolError" in r or "WriteError" in r) for r in retries), retries
    assert len(out.read_text().splitlines()) == 1 + 4
    assert len(jobs_client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]) == before + 1, "one job only"


@pytest.mark.parametrize("command", ["screen", "predict"])
def test_connection_refused_fails_within_seconds_with_a_hint(
    command: str, tree: Path, tmp_path: Path, unused_port: int
) -> None:
    args = [str(tree), "--out", str(tmp_path / "r.csv")] if command == "screen" else [str(tree / "a" / "nacl.cif")]
    started = time.monotonic()
    done = _run(command, *args, "--url", f"http://127.0.0.1:{unused_port}")
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert elapsed < 15, f"{elapsed:.1f} s: a refused connection is not worth 8 retries"  # ~3 s, loaded machine
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: unreachable: cannot connect to http://127.0.0.1:{unused_port}")
    assert "ConnectError" in lines[-1] and "Check --url" in lines[-1]
    assert "Traceback" not in done.stderr and "retry" not in done.stderr


def test_predict_one_file(jobs_server: Any, tree: Path) -> None:
    ok = _run("predict", str(tree / "a" / "nacl.cif"), "--url", jobs_server.url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("nacl.cif: NaCl (8 sites)")
    assert "formation_energy_per_atom" in ok.stdout and "eV/atom" in ok.stdout
    assert "cgcnn-formation-energy@1" in ok.stdout
    bad = _run("predict", str(tree / "bad.cif"), "--url", jobs_server.url)
    assert bad.returncode == 1 and "invalid_cif" in bad.stderr


def test_predict_several_files_one_failing(jobs_server: Any, tree: Path) -> None:
    files = [str(tree / "a" / "nacl.cif"), str(tree / "a" / "b" / "cu.CIF"), str(tree / "bad.cif")]
    done = _run("predict", *files, "--url", jobs_server.url)
    assert done.returncode == 1, "one file failed"
    assert f"{files[0]}: NaCl (8 sites)" in done.stdout and f"{files[1]}: Cu (" in done.stdout
    assert done.stdout.count("formation_energy_per_atom") == 2
    assert f"{files[2]}: invalid_cif:" in done.stderr
    answers = json.loads(_run("predict", *files, "--url", jobs_server.url, "--json").stdout)
    assert [(a["filename"], a["ok"]) for a in answers] == [(files[0], True), (files[1], True), (files[2], False)]
    assert answers[0]["structure"]["reduced_formula"] == "NaCl" and answers[2]["error"]["code"] == "invalid_cif"


@pytest.mark.parametrize("command", ["predict", "screen"])
def test_a_missing_file_is_a_one_line_error(command: str, tmp_path: Path) -> None:
    missing = tmp_path / ("nope.cif" if command == "predict" else "nope.tar.gz")
    done = _run(command, str(missing), "--url", "http://127.0.0.1:9")  # fails before any connection
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: file_not_found: {missing}: no such file" + (
        "" if command == "predict" else " or folder"
    )


def test_screen_out_suffix_picks_the_format(
    jobs_server: Any, jobs_client: httpx.Client, tree: Path, tmp_path: Path
) -> None:
    as_json = tmp_path / "results.json"
    done = _run("screen", str(tree), "--url", jobs_server.url, "--out", str(as_json), "--poll", "0.1")
    assert done.returncode == 0, done.stderr
    items = json.loads(as_json.read_text())
    assert sorted(i["filename"] for i in items) == ["a/b/cu.CIF", "a/b/srtio3.cif", "a/nacl.cif", "bad.cif"]
    nacl = next(i for i in items if i["filename"] == "a/nacl.cif")
    assert nacl["ok"] and "warnings" in nacl and -20 < nacl["predictions"]["formation_energy_per_atom"]["value"] < 20
    assert next(i for i in items if i["filename"] == "bad.cif")["error"]["code"] == "invalid_cif"

    as_ndjson = tmp_path / "results.ndjson"
    done = _run("screen", str(tree), "--url", jobs_server.url, "--out", str(as_ndjson), "--poll", "0.1")
    assert done.returncode == 0, done.stderr
    lines = as_ndjson.read_text().splitlines()
    assert sorted(json.loads(line)["filename"] for line in lines) == sorted(i["filename"] for i in items)
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob("*.tmp"))

    before = len(jobs_client.get("/v1/jobs", params={"limit": 500}).json()["jobs"])
    refused = _run("screen", str(tree), "--url", jobs_server.url, "--out", str(tmp_path / "results.xlsx"))
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: bad_out: --out") and ".json or .ndjson" in refused.stderr
    assert len(jobs_client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]) == before, "nothing submitted"
    assert not (tmp_path / "results.xlsx").exists()


def test_progress_counts_are_integers_not_1e4() -> None:
    from tqdm import tqdm

    from crystal_client.cli import progress_counts

    with tqdm(total=20_000, file=io.StringIO()) as bar:
        bar.set_postfix(progress_counts({"ok": 10_000, "failed": 123_456}), refresh=False)
        assert "ok=10000, failed=123456" in str(bar)
        bar.set_postfix(ok=10_000, refresh=False)
        assert "ok=1e+4" in str(bar), "tqdm's own number format, which progress_counts avoids"


def _jobs(client: httpx.Client) -> list[dict[str, Any]]:
    return client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]


def test_ctrl_c_then_the_same_command_re_attaches(
    jobs_server: Any, jobs_client: httpx.Client, tmp_path: Path, many_cifs: Callable
) -> None:
    n = 400
    folder = tmp_path / "set"
    for name, text in many_cifs(n).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    out = tmp_path / "results.csv"
    command = [str(CLI), "screen", str(folder), "--url", jobs_server.url, "--out", str(out), "--poll", "0.1"]
    before = len(_jobs(jobs_client))
    # Ctrl-C as a terminal sends it: SIGINT with its default disposition. A test run started in the background by a
    # non-interactive shell (`make test &`) inherits SIGINT ignored, and Python then leaves it ignored, so the
    # child would never see the signal and would finish the job instead.
    first = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    assert first.stderr is not None
    while not any("submitted" in line for line in seen):
        line = first.stderr.readline().decode()
        assert line, "".join(seen)
        seen.append(line)
    job_id = seen[-1].split()[1]
    first.send_signal(signal.SIGINT)
    stderr = "".join(seen) + first.stderr.read().decode()
    assert first.wait(timeout=60) == 130, stderr
    assert f"job {job_id} goes on" in stderr and "Run the same command again" in stderr, stderr
    assert f"crystal-predict cancel {job_id}" in stderr and "Traceback" not in stderr
    assert json.loads((tmp_path / "results.csv.job.json").read_text())["job"] == job_id

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"re-attached to job {job_id}" in again.stderr and "packed" not in again.stderr, "no new upload"
    assert len(out.read_text().splitlines()) == 1 + n
    assert len(_jobs(jobs_client)) == before + 1, "one job on the server"
    assert not (tmp_path / "results.csv.job.json").exists(), "the state file goes once the results are complete"

    # Without the state file the upload's key (a hash of the files and options) finds the same job;
    # other options, or --new, make a new one.
    again = _run(*command[1:])
    assert again.returncode == 0 and f"re-attached to job {job_id}: the service already has" in again.stderr
    assert len(_jobs(jobs_client)) == before + 1
    (folder / "set" / "00000-nacl.cif").write_text(many_cifs(1)["set/00000-nacl.cif"] + "\n")  # one byte more
    changed = _run(*command[1:])
    assert changed.returncode == 0 and "submitted" in changed.stderr and job_id not in changed.stderr
    assert _run(*command[1:], "--new").returncode == 0
    assert len(_jobs(jobs_client)) == before + 3


def test_cancel_a_job(jobs_server: Any, jobs_client: httpx.Client, many_cifs: Callable) -> None:
    files = [("files", (name, text)) for name, text in many_cifs(2).items()]
    job = jobs_client.post("/v1/jobs", files=files).json()
    done = _run("cancel", job["id"], "--url", jobs_server.url)
    assert done.returncode == 0, done.stderr
    assert f"job {job['id']}" in done.stderr and "deleted" in done.stderr
    assert jobs_client.get(f"/v1/jobs/{job['id']}").status_code == 404
    again = _run("cancel", job["id"], "--url", jobs_server.url)
    assert again.returncode == 1 and "job_not_found" in again.stderr
