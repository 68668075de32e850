"""``python -m service screen``: real Materials Project CIFs through a real local Ray instance.

The answers must equal the batch API's (``POST /v1/predict/batch`` of the same files on a live
server with the same models), and a second run must skip the partitions already written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.jobs import csv_header
from service.jobs._export import csv_lines

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

N_CIFS = 200


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray instance with 2 CPUs, its temp dir a short temporary folder (socket paths are capped).

    Token authentication is off (``RAY_AUTH_MODE=disabled``, for this process and the ones it starts): the
    instance listens on this machine only, and with it on Ray would write its token to ``~/.ray``.
    """
    temp = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), logging_level="WARNING")
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


def _screen(
    *args: str, models_dir: Path, cwd: Path, settings: dict[str, str] | None = None, returncode: int = 0
) -> subprocess.CompletedProcess[str]:
    """``python -m service screen ARGS`` with ``CRYSTAL_*`` ``settings``; its exit status must be ``returncode``."""
    env = {
        **os.environ,
        "CRYSTAL_MODELS_DIR": str(models_dir),
        "CRYSTAL_DATA_DIR": str(cwd / "data"),
        **(settings or {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "service", "screen", *args, "--no-progress"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == returncode, done.stderr[-3000:]
    return done


@pytest.mark.data
def test_screen_of_mp_cifs_equals_the_batch_api_and_resumes(
    ray_address: str, mp_subset: Path, models_dir: Path, client: Any, cifs: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((mp_subset / "cifs").glob("*.cif"))[:N_CIFS]:
        shutil.copy(path, folder / path.name)
    (folder / "zz-garbage.cif").write_text(cifs["garbage"])
    (folder / "zz-two-blocks.cif").write_text(cifs["two_blocks"])
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == N_CIFS + 2

    out_csv = tmp_path / "results.csv"
    _screen(
        str(folder),
        "--out",
        str(out_csv),
        "--address",
        ray_address,
        "--partition-size",
        "64",
        models_dir=models_dir,
        cwd=tmp_path,
    )

    files = [("files", (name, (folder / name).read_bytes())) for name in names]
    answer = client.post("/v1/predict/batch", files=files).raise_for_status().json()
    properties = list(answer["results"][0]["predictions"])
    expected = csv_lines([json.dumps(item) for item in answer["results"]], properties, header=True)
    assert out_csv.read_text() == expected
    assert out_csv.read_text().splitlines()[0].split(",") == csv_header(properties)

    # Parquet: a folder of partitions; delete one, run again: only that one is computed again.
    out_pq = tmp_path / "results.parquet"
    _screen(
        str(folder),
        "--out",
        str(out_pq),
        "--address",
        ray_address,
        "--partition-size",
        "64",
        models_dir=models_dir,
        cwd=tmp_path,
    )
    parts = sorted(out_pq.glob("part-*.parquet"))
    assert len(parts) == 4  # 202 files in partitions of 64
    table = pq.read_table(out_pq).to_pylist()
    assert [row["file"] for row in table] == [line.split(",")[0] for line in expected.splitlines()[1:]]
    for row, item in zip(table, [r for r in answer["results"]], strict=True):
        for prop in properties:
            value = (item.get("predictions") or {}).get(prop, {}).get("value")
            assert row[prop] == value, (row["file"], prop)  # the same float, to the bit
        assert row["error_code"] == ((item.get("error") or {}).get("code") or "")
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}
    parts[1].unlink()
    again = _screen(
        str(folder),
        "--out",
        str(out_pq),
        "--address",
        ray_address,
        "--partition-size",
        "64",
        models_dir=models_dir,
        cwd=tmp_path,
    )
    assert "138 file(s) in partitions written before" in again.stdout, again.stdout
    for p in sorted(out_pq.glob("part-*.parquet")):
        if p.name != parts[1].name:
            assert p.stat().st_mtime_ns == mtimes[p.name], f"{p.name} was written again"
    assert pq.read_table(out_pq).to_pylist() == table


def test_screen_on_a_cluster_too_small_for_its_actors_stops_with_the_reason(
    ray_address: str, models_dir: Path, cifs: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "nacl.cif").write_text(cifs["nacl"])
    out = tmp_path / "results.csv"
    done = _screen(
        str(folder),
        "--out",
        str(out),
        "--address",
        ray_address,
        models_dir=models_dir,
        cwd=tmp_path,
        settings={"CRYSTAL_RAY_ACTOR_CPUS": "4", "CRYSTAL_RAY_START_TIMEOUT_S": "1"},
        returncode=2,
    )
    assert "screen: 1 inference actor(s) did not load the models in 1 s" in done.stderr, done.stderr[-3000:]
    assert "asks for 4 CPU, the cluster has 2 CPU" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
