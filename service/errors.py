"""One error hierarchy and one handler that renders RFC 9457 ``application/problem+json``.

Every request-level error is a :class:`ServiceError` subclass carrying its HTTP status and a
stable machine-readable ``code``; the handler also turns FastAPI's validation errors, unknown
routes and unexpected exceptions into the same shape, so a client never sees an HTML 500.
Inside a batch the same errors become per-item ``{"code", "detail"}`` entries instead.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from crystalgraph import StructureError

__all__ = [
    "PROBLEM_JSON",
    "ServiceError",
    "InvalidRequest",
    "UnsupportedMediaType",
    "Unauthorized",
    "Forbidden",
    "HostNotAllowed",
    "OriginNotAllowed",
    "NotFound",
    "ModelNotFound",
    "ModelNotReady",
    "InvalidStructure",
    "TooManyAtoms",
    "ParseTimeout",
    "ParseMemoryExceeded",
    "PayloadTooLarge",
    "FileTooLarge",
    "RequestTooLarge",
    "TooManyFiles",
    "ArchiveInvalid",
    "ClientDisconnected",
    "InferenceFailed",
    "InternalError",
    "to_service_error",
    "install_error_handler",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("service.errors")


class ServiceError(Exception):
    """Base class: an error with an HTTP status, a stable ``code`` and a sentence for a person.

    Args:
        detail: What went wrong with this request, for a person.
        code: Overrides the class's ``code`` (structure errors carry the core library's code).
    """

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def problem(self, instance: str | None = None) -> dict[str, object]:
        """The RFC 9457 problem document (``type``, ``title``, ``status``, ``detail``, ``code``)."""
        body: dict[str, object] = {
            "type": f"urn:crystal-service:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance is not None:
            body["instance"] = instance
        return body


class InvalidRequest(ServiceError):
    """A request that does not say what to do: a missing or extra file field, bad parameters."""

    status, code, title = 422, "invalid_request", "Invalid request"


class UnsupportedMediaType(ServiceError):
    """A body whose content type (or content) is not one the endpoint reads."""

    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Unauthorized(ServiceError):
    """An API key is required and the ``X-API-Key`` header is missing or wrong."""

    status, code, title = 401, "unauthorized", "Missing or wrong API key"


class Forbidden(ServiceError):
    """The API key is right but may not do this (reloading the models needs an admin key)."""

    status, code, title = 403, "forbidden", "Not allowed for this API key"


class HostNotAllowed(ServiceError):
    """The ``Host`` header names a host this service does not answer for (DNS rebinding guard)."""

    status, code, title = 400, "host_not_allowed", "Host not allowed"


class OriginNotAllowed(ServiceError):
    """A state-changing request sent by a page of another site (cross-site request guard)."""

    status, code, title = 403, "origin_not_allowed", "Cross-site request refused"


class NotFound(ServiceError):
    """No such resource: an unknown route, static file or job."""

    status, code, title = 404, "not_found", "Not found"


class ModelNotFound(NotFound):
    """The request names a model that is not loaded."""

    code, title = "unknown_model", "Unknown model"


class ModelNotReady(ServiceError):
    """The service cannot predict now: its models are loading or failed, or the worker stopped."""

    status, code, title = 503, "not_ready", "Service not ready"


class InvalidStructure(ServiceError):
    """A file that cannot be predicted; ``code`` names why (``invalid_cif``, ``isolated_atom``...)."""

    status, code, title = 422, "invalid_structure", "Structure cannot be predicted"

    @classmethod
    def from_structure_error(cls, exc: StructureError) -> InvalidStructure:
        """The service error for a core library :class:`~crystalgraph.StructureError`, keeping its ``code``."""
        return cls(str(exc), code=exc.code)


class TooManyAtoms(InvalidStructure):
    """A structure with more atoms than ``max_atoms`` allows."""

    code = "too_many_atoms"


class ParseTimeout(InvalidStructure):
    """The file took longer than ``parse_timeout_s`` to parse; its worker was stopped."""

    code = "parse_timeout"


class ParseMemoryExceeded(InvalidStructure):
    """Parsing the file needed more memory than a parse worker may use (``parse_max_memory_bytes``)."""

    code = "parse_memory_exceeded"


class PayloadTooLarge(ServiceError):
    """Base class of the size limits: something in the request is larger than allowed."""

    status, code, title = 413, "request_too_large", "Content too large"


class FileTooLarge(PayloadTooLarge):
    """One uploaded file is larger than the limit per file."""

    code = "file_too_large"


class RequestTooLarge(PayloadTooLarge):
    """The whole upload is larger than the limit per request (or per job)."""

    code = "request_too_large"


class TooManyFiles(PayloadTooLarge):
    """A request or an archive holds more files than allowed."""

    code = "too_many_files"


class ArchiveInvalid(ServiceError):
    """A zip or tar archive that cannot be read, or a member that cannot be unpacked."""

    status, code, title = 400, "archive_invalid", "Archive cannot be unpacked"


class ClientDisconnected(ServiceError):
    """The client closed the connection before its request body was read (nobody reads the answer)."""

    status, code, title = 400, "client_disconnected", "Client disconnected"


class InferenceFailed(ServiceError):
    """A model raised, or returned a non-finite value, while predicting."""

    status, code, title = 500, "inference_failed", "Inference failed"


class InternalError(ServiceError):
    """An unexpected failure of the server itself (logged; the client is told no more)."""

    status, code, title = 500, "internal_error", "Internal error"


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is invalid."


def to_service_error(exc: BaseException) -> ServiceError:
    """Map any exception met while handling a request to a :class:`ServiceError`."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, StructureError):
        return InvalidStructure.from_structure_error(exc)
    if isinstance(exc, RequestValidationError):
        return InvalidRequest(_validation_detail(exc))
    if isinstance(exc, ClientDisconnect):
        return ClientDisconnected("The client closed the connection while sending its request.")
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return NotFound("No such resource.")
        err = ServiceError(str(exc.detail), code="method_not_allowed" if exc.status_code == 405 else "http_error")
        err.status, err.title = exc.status_code, "HTTP error"
        return err
    return InternalError("The server met an unexpected error; it has been logged.")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette names only the first matching route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    error = to_service_error(exc)
    if not isinstance(exc, ServiceError | StarletteHTTPException | RequestValidationError | ClientDisconnect):
        log.error("%s %s -> unexpected %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
    elif error.status >= 500 and error.status != 503:
        log.error("%s %s -> %s: %s", request.method, request.url.path, error.code, error.detail)
    headers = {"WWW-Authenticate": "ApiKey"} if error.status == 401 else {}
    if isinstance(exc, StarletteHTTPException) and exc.headers:
        headers.update(exc.headers)
    if error.status == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(
        error.problem(instance=request.url.path), status_code=error.status, media_type=PROBLEM_JSON, headers=headers
    )


def install_error_handler(app: FastAPI) -> None:
    """Register the one handler for service errors, validation errors, HTTP errors and the rest."""
    for exc_type in (ServiceError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, _handle)
