"""Hostile HTTP against a real server run with the service's own server options (``service.server``).

Oversized headers, idle and slow connections, too many connections, cross-site writes, foreign
``Host`` names, and client errors that used to be 500s: each answered as it should, in bounded
time, and the server answers NaCl promptly afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from service import Settings, create_app
from service.server import server_options


class OptionsServer:
    """``create_app(settings)`` under uvicorn with ``server_options(settings)``, in a thread."""

    def __init__(self, settings: Settings) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=0, log_level="warning", **server_options(settings)
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline + 120, "the server did not get ready"
                time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="module")
def hardened(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptionsServer]:
    settings = Settings(
        models_dir=models_dir,
        parse_workers=1,
        data_dir=tmp_path_factory.mktemp("http-data"),
        http_header_timeout_s=3.0,
        http_keep_alive_s=1,
        http_max_connections=40,
        allowed_hosts=["crystal.lab"],
        allowed_origins=["https://portal.lab"],
    )
    live = OptionsServer(settings)
    yield live
    live.stop()


@pytest.fixture
def client(hardened: OptionsServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hardened.url, timeout=60) as c:
        yield c


def nacl_is_prompt(client: httpx.Client, cif: str, bound_s: float = 15.0) -> None:
    start = time.monotonic()
    assert client.post("/v1/predict", json={"cif": cif}).status_code == 200
    assert time.monotonic() - start < bound_s


def test_oversized_header_is_refused_at_once(hardened: OptionsServer, client: httpx.Client, cifs) -> None:
    """A 64 MiB header (read whole before): refused once past 64 KiB, the connection closed."""
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=30) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        try:
            chunk = b"a" * (1 << 20)
            while sent < 64 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection while we were sending
        answer = b""
        with contextlib.suppress(OSError):
            answer = sock.recv(4096)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:100]
        assert sent < 16 << 20, f"the server read {sent} bytes of headers"
        assert time.monotonic() - start < 20
    nacl_is_prompt(client, cifs["nacl"])


def test_idle_connections_are_closed_after_the_keep_alive_timeout(
    hardened: OptionsServer, client: httpx.Client, cifs
) -> None:
    """A connection that never sends a byte holds its file descriptor ``http_keep_alive_s`` (1 s), not 3 s."""
    start = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", hardened.port), timeout=30) for _ in range(20)]
    try:
        for sock in idle:
            assert sock.recv(1) == b""  # closed by the server
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 2.7, f"idle connections closed after {elapsed:.1f} s (keep-alive 1 s, head 3 s)"
    finally:
        for sock in idle:
            sock.close()
    nacl_is_prompt(client, cifs["nacl"])


def test_slow_connections_are_closed_at_the_head_deadline(hardened: OptionsServer, client: httpx.Client, cifs) -> None:
    """A connection sending its head a byte at a time (never idle) is closed after ``http_header_timeout_s``."""
    slow = socket.create_connection(("127.0.0.1", hardened.port), timeout=30)
    start = time.monotonic()
    try:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - start < 20:
            try:
                slow.sendall(b"X")  # a slowloris client: never finishes its headers
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        assert closed, "a connection that never finished its request head was kept"
        assert time.monotonic() - start >= 2.9  # bytes kept coming: the idle timeout never fired
    finally:
        slow.close()
    nacl_is_prompt(client, cifs["nacl"])


def test_too_many_connections_get_503_not_a_hang(hardened: OptionsServer, client: httpx.Client, cifs) -> None:
    """Past ``http_max_connections`` a request is answered 503 at once; once they close, service resumes."""
    held = [socket.create_connection(("127.0.0.1", hardened.port), timeout=30) for _ in range(45)]
    for sock in held:  # slow clients, not idle ones: held until the head deadline (3 s), not the idle timeout (1 s)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    try:
        start = time.monotonic()
        with httpx.Client(base_url=hardened.url, timeout=10) as extra:
            assert extra.get("/healthz").status_code == 503
        assert time.monotonic() - start < 5
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    nacl_is_prompt(client, cifs["nacl"])


def test_cross_site_writes_and_foreign_hosts_are_refused(client: httpx.Client, cifs) -> None:
    nacl = {"cif": cifs["nacl"]}
    # CSRF: a page of another site posting to the service (Origin, or only Sec-Fetch-Site).
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post("/v1/predict", json=nacl, headers=headers)
        assert response.status_code == 403, headers
        assert response.json()["code"] == "origin_not_allowed"
        assert client.post("/v1/jobs", files=[("files", ("a.cif", cifs["nacl"]))], headers=headers).status_code == 403
    # The service's own page, an allowed origin, and clients without Origin are served.
    assert client.post("/v1/predict", json=nacl, headers={"Origin": client.base_url.__str__().rstrip("/")}).is_success
    assert client.post("/v1/predict", json=nacl, headers={"Origin": "https://portal.lab"}).is_success
    assert client.post("/v1/predict", json=nacl).is_success
    # Reading is not a cross-site write (a foreign page cannot read the answer anyway).
    assert client.get("/v1/models", headers={"Origin": "https://evil.example"}).is_success
    # DNS rebinding: a foreign Host header is refused; allowed names are served.
    rebound = client.get("/v1/jobs", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 400 and rebound.json()["code"] == "host_not_allowed"
    for host in ("localhost:1234", "127.0.0.1", "crystal.lab:8000", "[::1]:80"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


def test_security_headers_on_the_page_and_the_api(client: httpx.Client) -> None:
    for path in ("/", "/v1/models", "/healthz"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


def test_client_errors_are_not_500(hardened: OptionsServer, client: httpx.Client, cifs) -> None:
    boundary = "b" * 300
    body = f"--{boundary}\r\nContent-Disposition: form-data; name=files; filename=a.cif\r\n\r\nx\r\n--{boundary}--\r\n"
    response = client.post(
        "/v1/predict/batch", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    job = client.post("/v1/jobs", files=[("files", ("a.cif", cifs["nacl"]))]).json()
    for offset in (2**63, 2**64, 10**30):
        response = client.get(f"/v1/jobs/{job['id']}/results", params={"offset": offset})
        assert response.status_code == 422, offset
    # A client that disconnects in the middle of its upload: the server stays up and answers.
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n--xyz\r\n"
        )
        time.sleep(0.3)
    nacl_is_prompt(client, cifs["nacl"])
