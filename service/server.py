"""The HTTP server's limits: header size, time to send a request head, keep-alive, connections.

uvicorn's default HTTP parser (httptools) puts no bound on a request's headers (a 64 MiB header
was read, stalling the event loop for seconds), and no uvicorn parser bounds the time a client
takes to send its request head: idle and slow connections were kept for minutes, until the
process ran out of file descriptors. The service therefore runs uvicorn with:

- the ``h11`` parser, whose ``max_incomplete_event_size`` caps the request line and headers
  (``http_max_header_bytes``; larger gets 431-like "400 Bad Request" and the connection closed),
- an idle timeout (``http_keep_alive_s``, uvicorn's keep-alive timeout): a connection that sends
  nothing for that long, whether freshly opened or between requests, is closed (uvicorn itself
  arms it only after a first answer, so a connection that never sent a byte waited for the
  head deadline),
- a request-head deadline (``http_header_timeout_s``): a connection that has not sent a
  complete request head that long after it opened (or after its previous answer) is closed,
  however it trickles bytes in (slowloris),
- a concurrency cap (``http_max_connections``, uvicorn's ``limit_concurrency``): past it new
  requests are answered 503 at once, well before the process's file-descriptor limit, which
  :func:`raise_fd_limit` lifts to its hard limit at start-up (often 1,024 soft).

So a connection holds a file descriptor for at most ``http_keep_alive_s`` (5 s) while silent and
``http_header_timeout_s`` (10 s) while sending a head, far below the usual proxy defaults (nginx:
60 s for a head, 75 s keep-alive). 10 s lets a client on a slow link send a full 64 KiB head
(6.5 KB/s) and is no cost to one on a fast link, which sends its head in milliseconds. A client
opening thousands of connections per second still needs a firewall or proxy in front.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import Settings

__all__ = ["server_options", "raise_fd_limit", "HeadTimeoutH11Protocol"]


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that stay silent or do not send a request head in time."""

    head_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the idle timeout and the deadline for the first request head."""
        super().connection_made(transport)
        # uvicorn's keep-alive timer, cancelled by the first bytes received (``data_received``).
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        waiting_for = self.cycle  # a new request replaces the cycle

        def expire() -> None:
            if self.cycle is waiting_for and not self.transport.is_closing():
                self.transport.close()

        self._head_timer = self.loop.call_later(self.head_timeout_s, expire)

    def on_response_complete(self) -> None:
        """Start the deadline for the next request head on this connection."""
        super().on_response_complete()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the head deadline and the idle timeout."""
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        self._unset_keepalive_if_required()
        super().connection_lost(exc)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.Config`` / ``uvicorn.run`` that apply the HTTP limits."""
    protocol = type("ServiceH11Protocol", (HeadTimeoutH11Protocol,), {"head_timeout_s": settings.http_header_timeout_s})
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_keep_alive": settings.http_keep_alive_s,
        "limit_concurrency": settings.http_max_connections,
    }


def raise_fd_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
