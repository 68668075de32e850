"""An HTTP client for the prediction service that retries what a flaky network breaks.

Connection errors, time-outs, and ``502``/``503``/``504`` answers (a proxy, or a service still
loading its models) are retried with exponential back-off; any other answer is returned.
A refused connection before the service has answered anything (a wrong ``--url``, a service
not started) is retried for ``connect_grace_s`` seconds only, then fails with a hint; once the
service has answered, a refused connection (a restart) gets the full back-off.
Submissions carry an ``Idempotency-Key``, so retrying a ``POST`` whose answer was lost never
creates a second job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["ServiceClient", "ServiceError", "RETRY_STATUSES"]

RETRY_STATUSES = frozenset({502, 503, 504})


class ServiceError(Exception):
    """The service refused a request (its problem ``code`` and ``detail``), or could not be reached."""

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServiceError:
        try:
            body = response.json()
            return cls(
                str(body.get("code", "http_error")), str(body.get("detail", response.text)), response.status_code
            )
        except ValueError:
            return cls("http_error", f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)


class ServiceClient:
    """Requests to one service, retried on connection errors.

    Args:
        url: The service's base URL (``http://127.0.0.1:8000``).
        api_key: Sent as ``X-API-Key`` when given.
        retries: Attempts after the first one before giving up.
        backoff: First wait in seconds; doubled each attempt, at most 30 s.
        timeout: Seconds to wait for a connection or a read.
        connect_grace_s: How long a refused connection is retried before the service has
            answered once.
        log: Where retry messages go (default: standard error).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        retries: int = 8,
        backoff: float = 0.5,
        timeout: float = 60.0,
        connect_grace_s: float = 3.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries
        self.backoff = backoff
        self.connect_grace_s = connect_grace_s
        self.url = url
        #: Whether the service has answered a request of this client (a refused connection is then a restart).
        self.reached = False
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, attempt: int, reason: str) -> None:
        """Sleep before retry ``attempt`` (1-based), or raise once the retries are spent."""
        if attempt > self.retries:
            raise ServiceError("unreachable", f"{reason}; gave up after {self.retries} retries")
        delay = min(30.0, self.backoff * 2 ** (attempt - 1))
        self.log(f"{reason}; retry {attempt}/{self.retries} in {delay:.1f} s")
        time.sleep(delay)

    def request(
        self, method: str, path: str, *, body: Callable[[], dict[str, Any]] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request, retried; ``body()`` builds fresh request arguments for each attempt (file uploads).

        Raises:
            ServiceError: the service answered an error (other than the retried ones), or the
                retries ran out.
        """
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                extra = body() if body is not None else {}
                response = self.http.request(method, path, **kwargs, **extra)
            except httpx.ConnectError as exc:
                if self.reached:
                    attempt += 1
                    self.wait(attempt, f"{method} {path}: {type(exc).__name__}: {exc or 'connection failed'}")
                elif time.monotonic() - started < self.connect_grace_s:
                    time.sleep(0.5)
                else:
                    raise ServiceError(
                        "unreachable",
                        f"cannot connect to {self.url} ({type(exc).__name__}: {exc or 'connection failed'}); "
                        "is the service running there? Check --url (or CRYSTAL_URL)",
                    ) from None
                continue
            except httpx.TransportError as exc:
                attempt += 1
                self.wait(attempt, f"{method} {path}: {type(exc).__name__}: {exc or 'connection failed'}")
                continue
            self.reached = True
            if response.status_code in RETRY_STATUSES:
                attempt += 1
                self.wait(attempt, f"{method} {path}: {ServiceError.from_response(response)}")
                continue
            if response.status_code >= 400:
                raise ServiceError.from_response(response)
            return response
