"""``python -m service`` in a child process on a free loopback port, for the checks to talk to."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ServiceProcess"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """A real service process; a context manager that starts it and waits for ``/readyz``.

    Args:
        label: A name for messages (``cuda/torch``).
        env: ``CRYSTAL_*`` settings on top of this process's environment.
        ready_timeout: Seconds to wait for ``/readyz`` to answer 200.

    Attributes:
        url: ``http://127.0.0.1:<port>`` once started.
    """

    def __init__(self, label: str, env: dict[str, str], ready_timeout: float = 600.0) -> None:
        self.label = label
        self.env = env
        self.ready_timeout = ready_timeout
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        # kept open for the server's lifetime (its stdout and stderr), closed by stop()
        self._log = tempfile.NamedTemporaryFile(prefix=f"gpucheck-{label.replace('/', '-')}-", suffix=".log")  # noqa: SIM115

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the service's output."""
        self._log.flush()
        return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> ServiceProcess:
        """Start the service and wait until it is ready.

        Raises:
            RuntimeError: it exited or did not get ready in time (with its last log lines).
        """
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
        self._proc = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    raise RuntimeError(f"{self.label}: the service exited ({code}):\n{self.log_tail()}")
                try:
                    response = client.get("/readyz")
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                if response.status_code == 200:
                    return self
                last = response.text[:300]
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.label}: not ready after {self.ready_timeout:.0f} s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL after 30 s)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=600)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._log.close()
