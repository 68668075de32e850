"""A job through Ray Client (``CRYSTAL_RAY_ADDRESS=ray://host:port``), as the compose ``ray`` profile runs it.

A service on a host that is not itself a Ray node cannot join by the head's GCS address (a driver needs a
raylet on its own host: "Failed to connect to Ray cluster"); it joins through the head's Ray Client port.
Here a real head is started with ``ray start --head --block`` (its files under a temporary folder, its
``$HOME`` a temporary one), and a ``python -m service`` subprocess runs a job on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ray")
pytest.importorskip("grpc", reason="Ray Client needs ray[client]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def ray_client_address(tmp_path: Path) -> Iterator[str]:
    gcs, client = _free_port(), _free_port()
    home = tmp_path / "home"
    home.mkdir()
    log = open(tmp_path / "ray-head.log", "wb")  # noqa: SIM115 - the process holds it
    with tempfile.TemporaryDirectory(prefix="rh") as temp:  # short: Ray's socket paths are capped
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={gcs}",
             f"--ray-client-server-port={client}", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}"],
            # A loaded machine (CI, or training beside the tests) needs more than the 30 s Ray gives a node.
            env={**os.environ, "RAY_AUTH_MODE": "disabled", "HOME": str(home), "RAY_raylet_start_wait_time_s": "180"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"ray start --head exited: {(tmp_path / 'ray-head.log').read_text()[-3000:]}")
                try:
                    socket.create_connection(("127.0.0.1", client), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail("the Ray Client port did not open in 180 s")
                    time.sleep(0.5)
            yield f"ray://127.0.0.1:{client}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def test_a_job_through_ray_client_matches_the_batch_answers(
    ray_client_address: str,
    models_dir: Path,
    many_cifs: Callable[[int], dict[str, str]],
    make_archive: Callable[..., bytes],
    service_process: Callable[..., Any],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    members = many_cifs(24)
    service = service_process(
        {
            "CRYSTAL_MODELS_DIR": str(models_dir),
            "CRYSTAL_PARSE_WORKERS": "1",
            "CRYSTAL_JOBS_EXECUTOR": "ray",
            "CRYSTAL_RAY_ADDRESS": ray_client_address,
            "CRYSTAL_RAY_PARSE_BATCH": "8",
            "CRYSTAL_RAY_ACTOR_CPUS": "0.5",
            "RAY_AUTH_MODE": "disabled",
        }
    )
    with httpx.Client(base_url=service.url, timeout=120) as client:
        body = make_archive(members, "tar.gz")
        job = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/gzip"}).raise_for_status()
        status = wait_job(client, job.json()["id"], timeout=300)
        rows = client.get(job.json()["links"]["results"], params={"format": "ndjson"}).raise_for_status().text
        names = list(members)
        batch = client.post(
            "/v1/predict/batch", files=[("files", (n.split("/")[-1], members[n], "chemical/x-cif")) for n in names]
        ).raise_for_status()
    assert (status["state"], status["executor"], status["counts"]["done"]) == ("done", "ray", len(members))
    items = sorted((json.loads(line) for line in rows.splitlines()), key=lambda item: item["index"])
    assert [item["index"] for item in items] == list(range(len(members)))
    expected = batch.json()["results"]
    for item, answer in zip(items, expected, strict=True):
        assert item["ok"] and answer["ok"]
        for prop, value in answer["predictions"].items():
            assert item["predictions"][prop]["value"] == value["value"], (item["filename"], prop)
