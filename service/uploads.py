"""Reading request bodies into CIF uploads, with every size enforced while reading.

Limits are checked on the bytes as they arrive (chunked uploads included), never only from
``Content-Length``: memory never holds more than the limits. A body past its limit is still
drained up to a hard cap, so that the client can read the 413 answer, then refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from .archives import archive_kind, unpack
from .errors import (
    FileTooLarge,
    InvalidRequest,
    RequestTooLarge,
    ServiceError,
    TooManyFiles,
    UnsupportedMediaType,
)
from .schemas import PredictRequest
from .settings import Settings

__all__ = ["Upload", "UploadLimits", "read_body", "read_multipart", "read_single", "read_batch"]

_FIELD_LIMIT = 64 << 10
#: Past its limit, a one-file request is read and discarded up to this many more bytes, so that
#: a client still sending can read the 413 answer; beyond it the answer comes at once.
_DRAIN = 32 << 20
_CIF_TYPES = {"text/plain", "chemical/x-cif", "application/x-cif", "application/cif", "application/octet-stream"}
_ARCHIVE_TYPES = {
    "application/zip",
    "application/x-zip-compressed",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/x-gtar",
    "application/x-compressed-tar",
    "application/octet-stream",
}


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes, or the error that keeps it from being predicted."""

    filename: str
    data: bytes = b""
    error: ServiceError | None = None


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_files: int
    max_request_bytes: int
    max_unpacked_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.max_files,
            max_request_bytes=settings.max_request_bytes,
            max_unpacked_bytes=settings.max_unpacked_bytes,
        )

    @property
    def single_request_bytes(self) -> int:
        """Body cap of a one-file request: the file, JSON escaping and multipart headers."""
        return 2 * self.max_file_bytes + _FIELD_LIMIT

    def file_too_large(self, name: str) -> FileTooLarge:
        return FileTooLarge(f"{name} is larger than {self.max_file_bytes:,} bytes, the limit per file.")


def _check_length(request: Request, cap: int, error: ServiceError) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise error


async def read_body(stream: AsyncIterator[bytes], limit: int, error: ServiceError, *, drain: int = 0) -> bytes:
    """The whole body if it is at most ``limit`` bytes.

    Args:
        stream: The body's chunks (``request.stream()``).
        limit: Most bytes kept.
        error: Raised when the body is larger.
        drain: Past the limit, keep reading (and discarding) up to ``limit + drain`` bytes
            before raising, so a client still sending its body can read the answer.
    """
    buf = bytearray()
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit + drain:
            raise error
        if seen <= limit:
            buf.extend(chunk)
    if seen > limit:
        raise error
    return bytes(buf)


class _Collector:
    """python-multipart callbacks that keep each file part up to the per-file limit."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.uploads: list[Upload] = []
        self.fields: dict[str, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._start_part()

    def _start_part(self) -> None:
        self._disposition = b""
        self._name = ""
        self._filename: str | None = None
        self._is_file = False
        self._buf = bytearray()
        self._too_large = False

    def on_part_begin(self) -> None:
        self._start_part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name.extend(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._filename = filename.decode("utf-8", "replace")[:255] if filename is not None else None
        self._is_file = filename is not None or self._name in {"file", "files", "files[]"}
        if self._is_file and len(self.uploads) >= self.limits.max_files:
            raise TooManyFiles(f"More than {self.limits.max_files} files in one request, the limit.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._too_large:
            return
        self._buf.extend(data[start:end])
        limit = self.limits.max_file_bytes if self._is_file else _FIELD_LIMIT
        if len(self._buf) > limit:
            self._too_large = True
            self._buf = bytearray()

    def on_part_end(self) -> None:
        if not self._is_file:
            if self._too_large:
                raise InvalidRequest(f"Form field {self._name!r} is larger than {_FIELD_LIMIT:,} bytes.")
            self.fields[self._name] = bytes(self._buf)
            return
        name = self._filename or self._name or f"file{len(self.uploads) + 1}"
        if self._too_large:
            self.uploads.append(Upload(name, error=self.limits.file_too_large(name)))
        else:
            self.uploads.append(Upload(name, bytes(self._buf)))


async def read_multipart(
    stream: AsyncIterator[bytes], content_type: str, limits: UploadLimits, *, body_cap: int, cap_error: ServiceError
) -> list[Upload]:
    """The file parts of a ``multipart/form-data`` body, parsed as it streams in.

    A part named ``file``/``files`` or with a filename is a file; a file over the per-file
    limit becomes an :class:`Upload` carrying ``file_too_large``.

    Raises:
        TooManyFiles: more than ``limits.max_files`` file parts.
        ServiceError: ``cap_error`` once the body passes ``body_cap`` bytes.
        InvalidRequest: a malformed body.
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("The multipart body has no boundary in its Content-Type.")
    collector = _Collector(limits)
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        seen = 0
        async for chunk in stream:
            seen += len(chunk)
            if seen > body_cap:
                raise cap_error
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"The multipart body is malformed: {exc}.") from exc
    return collector.uploads


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_single(request: Request, limits: UploadLimits) -> Upload:
    """The one CIF of ``POST /v1/predict``: multipart field ``file``, JSON ``{"cif"}`` or a raw body.

    Raises:
        FileTooLarge: the CIF is over ``max_file_bytes``.
        InvalidRequest, UnsupportedMediaType: no CIF in the request.
    """
    media = _media_type(request)
    cap = limits.single_request_bytes
    too_large = limits.file_too_large("The file")
    _check_length(request, cap + _DRAIN, too_large)
    if media == "multipart/form-data":
        uploads = await read_multipart(
            request.stream(), request.headers["content-type"], limits, body_cap=cap + _DRAIN, cap_error=too_large
        )
        if not uploads:
            raise InvalidRequest("The multipart body has no file: send the CIF in the field 'file'.")
        if len(uploads) > 1:
            raise InvalidRequest("Send one file to /v1/predict; POST several to /v1/predict/batch.")
        if uploads[0].error is not None:
            raise uploads[0].error
        return uploads[0]
    if media == "application/json":
        body = await read_body(request.stream(), cap, too_large, drain=_DRAIN)
        try:
            payload = PredictRequest.model_validate_json(body)
        except ValueError as exc:
            raise InvalidRequest(f'The JSON body must be {{"cif": "<CIF text>"}}: {exc}') from exc
        data = payload.cif.encode("utf-8")
        if len(data) > limits.max_file_bytes:
            raise too_large
        return Upload(payload.filename or "upload.cif", data)
    if media in _CIF_TYPES:
        body = await read_body(request.stream(), limits.max_file_bytes, too_large, drain=_DRAIN)
        return Upload("upload.cif", body)
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not accepted: send multipart/form-data with a 'file' field, "
        'application/json {"cif": "..."}, or the CIF itself as text/plain or chemical/x-cif.'
    )


def _expand(uploads: list[Upload], limits: UploadLimits) -> list[Upload]:
    """Archives replaced by their members (run in a thread: decompression is CPU work)."""
    out: list[Upload] = []
    for upload in uploads:
        kind = archive_kind(upload.filename, upload.data) if upload.error is None else None
        if kind is None:
            out.append(upload)
            continue
        members = unpack(
            upload.filename,
            upload.data,
            max_file_bytes=limits.max_file_bytes,
            max_files=limits.max_files,
            max_unpacked_bytes=limits.max_unpacked_bytes,
        )
        for member in members:
            if member.data is None:
                out.append(Upload(member.name, error=limits.file_too_large(member.name)))
            else:
                out.append(Upload(member.name, member.data))
        if len(out) > limits.max_files:
            break
    if len(out) > limits.max_files:
        raise TooManyFiles(f"The request holds more than {limits.max_files} files, the limit.")
    return out


async def read_batch(request: Request, limits: UploadLimits) -> list[Upload]:
    """The CIFs of ``POST /v1/predict/batch``: multipart files and/or archives, or a raw archive body.

    Raises:
        TooManyFiles, RequestTooLarge, ArchiveInvalid, InvalidRequest, UnsupportedMediaType.
    """
    media = _media_type(request)
    too_large = RequestTooLarge(f"The request body is larger than {limits.max_request_bytes:,} bytes, the limit.")
    _check_length(request, limits.max_request_bytes, too_large)
    uploads: list[Upload]
    if media == "multipart/form-data":
        uploads = await read_multipart(
            request.stream(),
            request.headers["content-type"],
            limits,
            body_cap=limits.max_request_bytes,
            cap_error=too_large,
        )
    elif media in _ARCHIVE_TYPES:
        body = await read_body(request.stream(), limits.max_request_bytes, too_large)
        kind: Literal["zip", "tar"] | None = archive_kind("", body)
        if kind is None:
            raise UnsupportedMediaType("The body is not a zip or tar(.gz) archive.")
        uploads = [Upload(f"upload.{'zip' if kind == 'zip' else 'tar'}", body)]
    else:
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'} is not accepted: send multipart/form-data with one or more "
            "'files' (CIFs, or .zip/.tar.gz archives), or an archive as application/zip or application/gzip."
        )
    if not uploads:
        raise InvalidRequest("The request has no files: send CIFs in multipart fields named 'files'.")
    return await asyncio.to_thread(_expand, uploads, limits)
