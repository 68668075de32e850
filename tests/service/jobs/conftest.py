"""Fixtures for the jobs tests: live servers whose job data lives in a temporary folder.

The model repository (``models_dir``) and the CIFs (``cifs``) come from ``tests/service/conftest.py``.
Servers are real uvicorn servers on 127.0.0.1, in a thread (``LiveServer`` of
``tests/service/conftest.py``) or, where a test kills the process, a ``python -m service``
subprocess (``service_process``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Settings

GOOD = ("nacl", "cu", "cscl", "srtio3", "triclinic")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def jobs_server(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory, live_server_class: type[Any]
) -> Iterator[Any]:
    """The main jobs server: default job limits, one parse worker, its own data folder."""
    settings = Settings(models_dir=models_dir, parse_workers=1, data_dir=tmp_path_factory.mktemp("jobs-data"))
    live = live_server_class(settings).start()
    yield live
    live.stop()


@pytest.fixture
def jobs_client(jobs_server: Any) -> Iterator[httpx.Client]:
    with jobs_server.client() as c:
        yield c


@pytest.fixture
def wait_job() -> Callable[..., dict[str, Any]]:
    """``wait_job(client, job_id, until=finished, timeout=60)``: poll a job until ``until(status)``."""

    def wait(
        client: httpx.Client,
        job_id: str,
        until: Callable[[dict[str, Any]], bool] = lambda s: s["state"] in {"done", "failed", "cancelled"},
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
            if until(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not get there in {timeout} s: {status}")
            time.sleep(0.05)

    return wait


@pytest.fixture
def submit_archive(make_archive: Callable[..., bytes]) -> Callable[..., dict[str, Any]]:
    """``submit_archive(client, members)``: the job made of ``members`` sent as one ``.tar.gz`` body."""

    def submit(client: httpx.Client, members: dict[str, str]) -> dict[str, Any]:
        body = make_archive(members, "tar.gz")
        response = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/gzip"})
        assert response.status_code == 202, response.text
        return response.json()

    return submit


@pytest.fixture
def many_cifs(cifs: dict[str, str]) -> Callable[[int], dict[str, str]]:
    """``many_cifs(n)``: ``n`` good CIFs named ``set/NNNNN-<crystal>.cif`` (cycling through five crystals)."""

    def make(n: int) -> dict[str, str]:
        return {f"set/{i:05d}-{GOOD[i % len(GOOD)]}.cif": cifs[GOOD[i % len(GOOD)]] for i in range(n)}

    return make


@dataclass
class ServiceProcess:
    """``python -m service`` in its own process group, so that a test can ``kill -9`` all of it."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's output (stdout and stderr), for a failing test's message."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def service_process(tmp_path: Path, in_home: Callable[[str], bool]) -> Iterator[Callable[..., ServiceProcess]]:
    """``start(env)``: a ready ``python -m service`` subprocess with ``CRYSTAL_*`` settings from ``env``.

    Without ``CRYSTAL_DATA_DIR`` in ``env`` the process keeps its jobs in ``tmp_path/data``; one
    pointing into ``$HOME`` fails the test before the process starts.
    """
    started: list[ServiceProcess] = []

    def start(env: dict[str, str]) -> ServiceProcess:
        env = {"CRYSTAL_DATA_DIR": str(tmp_path / "data"), **env}
        if in_home(env["CRYSTAL_DATA_DIR"]):
            pytest.fail(f"CRYSTAL_DATA_DIR={env['CRYSTAL_DATA_DIR']} points into $HOME; use tmp_path", pytrace=False)
        port = free_port()
        log = open(tmp_path / f"service-{port}.log", "wb")  # noqa: SIM115 - the process holds it
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env={**os.environ, **env},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        live = ServiceProcess(proc, f"http://127.0.0.1:{port}", tmp_path / f"service-{port}.log")
        started.append(live)
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=live.url, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the service exited: {live.log_tail(100_000)}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return live
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not get ready")
                time.sleep(0.1)

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def service_on_ray(service_process: Callable[..., Any], models_dir: Path) -> Callable[..., Any]:
    """``service_on_ray(address, **settings)``: a ready ``python -m service`` running its jobs on that cluster."""

    def start(address: str, **settings: str) -> Any:
        return service_process(
            {
                "CRYSTAL_MODELS_DIR": str(models_dir),
                "CRYSTAL_PARSE_WORKERS": "1",
                "CRYSTAL_JOBS_EXECUTOR": "ray",
                "CRYSTAL_RAY_ADDRESS": address,
                "RAY_AUTH_MODE": "disabled",
                **settings,
            }
        )

    return start


@pytest.fixture(scope="session")
def limited_jobs_server(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory, live_server_class: type[Any]
) -> Iterator[Any]:
    """A jobs server with an API key and small job limits (4 files, 48 KiB, 8 KiB per CIF, 12 kB stored)."""
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path_factory.mktemp("limited-jobs-data"),
        api_key="s3cret",
        max_file_bytes=8 << 10,
        jobs_max_files=4,
        jobs_max_request_bytes=48 << 10,
        jobs_max_unpacked_bytes=24 << 10,
        jobs_max_storage_bytes=12_000,
    )
    live = live_server_class(settings).start()
    yield live
    live.stop()


@pytest.fixture
def limited_client(limited_jobs_server: Any) -> Iterator[httpx.Client]:
    with limited_jobs_server.client(headers={"X-API-Key": "s3cret"}) as c:
        yield c


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (yet)."""
    return free_port()


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 that hangs up on its first ``drop`` connections, then forwards to ``port``.

    A dropped connection is closed once the client has sent its first bytes, without an answer:
    what a client sees when a server or a network goes away mid-request.
    """

    def __init__(self, port: int, drop: int) -> None:
        self.target = port
        self.drop = drop
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, name="flaky-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.dropped < self.drop:
                self.dropped += 1
                client.recv(1024)
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@pytest.fixture
def flaky_proxy() -> Iterator[Callable[[int, int], FlakyProxy]]:
    """``flaky_proxy(port, drop)``: a :class:`FlakyProxy` closed when the test ends."""
    proxies: list[FlakyProxy] = []

    def make(port: int, drop: int) -> FlakyProxy:
        proxies.append(FlakyProxy(port, drop))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()
