"""Browser-facing defences: allowed ``Host`` names, same-origin writes, security headers.

The service usually runs without an API key on a lab machine, reachable from the user's
browser. Two attacks follow from that, and one middleware closes both:

- **DNS rebinding**: a page on ``evil.example`` whose name is re-pointed at 127.0.0.1 can read
  the service as its own origin. Its requests carry ``Host: evil.example``: a request whose host
  is not allowed is refused (400 ``host_not_allowed``). Allowed: ``localhost``, ``127.0.0.1``,
  ``::1``, the address the connection arrived on (the bind address, or the machine's address
  under ``0.0.0.0``), and ``allowed_hosts`` (``*``: any).
- **Cross-site requests (CSRF)**: any page can POST a form to the service. A state-changing
  request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) whose ``Origin`` (or, without one,
  ``Sec-Fetch-Site``) says it comes from another site is refused (403 ``origin_not_allowed``)
  unless that origin is in ``allowed_origins``. Requests without either header (curl, scripts,
  the Python client) are not browser cross-site requests and pass.

Every response also gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``
and a Content-Security-Policy that lets the page load only its own script and style sheet and
forbids framing (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for old browsers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PROBLEM_JSON, HostNotAllowed, OriginNotAllowed, ServiceError

__all__ = ["WebSecurityMiddleware", "SECURITY_HEADERS"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def _host_name(host: str) -> str:
    """``Host`` header value without its port, lower case (``[::1]:8000`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class WebSecurityMiddleware:
    """See the module docstring.

    Args:
        allowed_hosts: Host names (or IP addresses) accepted besides the local ones; ``*``: any.
        allowed_origins: Origins (``https://lab.example:8443``) whose pages may send
            state-changing requests besides the service's own.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        hosts = {h.strip().lower().strip("[]") for h in allowed_hosts if h.strip()}
        self.any_host = "*" in hosts
        self.hosts = _LOCAL_HOSTS | hosts
        self.origins = {o.strip().lower().rstrip("/") for o in allowed_origins if o.strip()}

    def _check(self, scope: Scope, headers: dict[bytes, bytes]) -> ServiceError | None:
        host = headers.get(b"host", b"").decode("latin-1")
        name = _host_name(host)
        server = scope.get("server") or ("", 0)
        if not self.any_host and name not in self.hosts and name != str(server[0]).lower():
            return HostNotAllowed(
                f"Host {host!r} is not served here (DNS rebinding guard); add it to CRYSTAL_ALLOWED_HOSTS."
            )
        if scope["method"] not in _UNSAFE_METHODS:
            return None
        origin = headers.get(b"origin", b"").decode("latin-1").strip().lower().rstrip("/")
        if origin:
            parts = urlsplit(origin)
            if origin == "null" or (parts.netloc != host.strip().lower() and origin not in self.origins):
                return OriginNotAllowed(
                    f"A page from {origin} may not change anything here (cross-site request guard); "
                    "add its origin to CRYSTAL_ALLOWED_ORIGINS to allow it."
                )
        elif headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
            return OriginNotAllowed("A page from another site may not change anything here (cross-site request guard).")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the Host and Origin, then run the app and add the security headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        error = self._check(scope, headers)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _RAW_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if error is None:
            await self.app(scope, receive, send_with_headers)
            return
        body = json.dumps(error.problem(instance=scope.get("path"))).encode()
        await send_with_headers(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send_with_headers({"type": "http.response.body", "body": body})
