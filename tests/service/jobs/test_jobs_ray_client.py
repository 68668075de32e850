"""A job through Ray Client (``CRYSTAL_RAY_ADDRESS=ray://host:port``), as the compose ``ray`` profile runs it.

A service on a host that is not itself a Ray node cannot join by the head's GCS address (a driver needs a
raylet on its own host: "Failed to connect to Ray cluster"); it joins through the head's Ray Client port.
Here a real head is started with ``ray start --head --block`` (its files under a temporary folder, its
``$HOME`` a temporary one), and a ``python -m service`` subprocess runs a job on it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("ray")
pytest.importorskip("grpc", reason="Ray Client needs ray[client]")

#: A line of a Ray log that may say why a job never started: Python's and glog's errors and warnings, tracebacks.
_COMPLAINT = re.compile(r"\b(ERROR|WARNING)\b| [EW] \d+ \d+\]|^Traceback|^\w*(Error|Exception)\b")
#: Ray's logs of what is not in the job's way (the dashboard's modules, periodic state dumps).
_QUIET = ("dashboard", "debug_state", "monitor", "events")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RayHead:
    """A running ``ray start --head``: its Ray Client address, its output, and its session's files."""

    address: str
    log: Path
    temp: Path

    def complaints(self, per_file: int = 4) -> str:
        """The last few error and warning lines of the head's output and of its session's logs.

        Short, as CI shows only the end of a run's output: enough to tell a client that never
        connected from actors that were never placed.
        """
        logs = sorted((self.temp / "session_latest" / "logs").glob("*")) if self.temp.is_dir() else []
        found = []
        for f in [self.log, *logs]:
            if not f.is_file() or f.name.startswith(_QUIET):
                continue
            lines = [line[:240] for line in f.read_text(errors="replace").splitlines() if _COMPLAINT.search(line)]
            if lines:
                found.append(f"--- {f.name}:\n" + "\n".join(lines[-per_file:]))
        return "\n".join(found) or "--- the Ray head logged no error"


def _news(log: str) -> str:
    """The service's log without its model loading (the test's repository, good and bad models alike)."""
    return "\n".join(line for line in log.splitlines() if "service.repository" not in line)[-1500:]


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[RayHead]:
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
            yield RayHead(f"ray://127.0.0.1:{client}", tmp_path / "ray-head.log", Path(temp))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node on SIGTERM
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def test_a_job_through_ray_client_matches_the_batch_answers(
    ray_head: RayHead,
    service_on_ray: Callable[..., Any],
    many_cifs: Callable[[int], dict[str, str]],
    submit_archive: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    members = many_cifs(24)
    service = service_on_ray(
        ray_head.address,
        CRYSTAL_RAY_PARSE_BATCH="8",
        CRYSTAL_RAY_ACTOR_CPUS="0.5",
        CRYSTAL_RAY_START_TIMEOUT_S="120",  # a start that sticks is retried within the wait below
    )
    with httpx.Client(base_url=service.url, timeout=120) as client:
        job = submit_archive(client, members)
        try:
            status = wait_job(client, job["id"], timeout=300)
        except AssertionError as stuck:  # what the service and the head said is the only clue to why
            said = f"{ray_head.complaints()}\n--- the service:\n{_news(service.log_tail(4000))}"
            raise AssertionError(f"{stuck}\n{said}") from None
        rows = client.get(job["links"]["results"], params={"format": "ndjson"}).raise_for_status().text
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


def test_a_ray_client_address_that_never_answers_leaves_the_job_waiting_with_the_reason(
    service_on_ray: Callable[..., Any],
    many_cifs: Callable[[int], dict[str, str]],
    submit_archive: Callable[..., dict[str, Any]],
    wait_job: Callable[..., dict[str, Any]],
) -> None:
    """A port that takes connections and says nothing: Ray's client waits on it; the service says so in time."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the kernel's backlog; nobody ever answers them
        address = f"ray://127.0.0.1:{silent.getsockname()[1]}"
        service = service_on_ray(address, CRYSTAL_RAY_START_TIMEOUT_S="2")
        with httpx.Client(base_url=service.url, timeout=30) as client:
            job = submit_archive(client, many_cifs(2))
            status = wait_job(client, job["id"], until=lambda s: s["waiting"] is not None, timeout=60)
            assert client.get("/readyz").status_code == 200, "the service answers on"
    assert (status["state"], status["waiting"]["code"]) == ("queued", "executor_unavailable")
    assert (
        f"joining the Ray cluster at {address} and loading the models has taken more than 2 s"
        in (status["waiting"]["detail"])
    )
