"""Reading request bodies into file uploads, with every size enforced while reading.

Limits are checked on the bytes as they arrive (chunked uploads included), never only from
``Content-Length``: memory never holds more than the limits. A body past its limit is still
drained up to a hard cap, so that the client can read the 413 answer, then refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from .archives import archive_kind
from .errors import FileTooLarge, InvalidRequest, ServiceError, TooManyFiles
from .settings import Settings

__all__ = ["Upload", "UploadLimits", "DRAIN", "check_length", "read_body", "read_multipart"]

_FIELD_LIMIT = 64 << 10
#: Part names the API documents as files (``format: binary``): they must be file parts.
_FILE_FIELDS = frozenset({"file", "files", "files[]"})
#: Past its limit, a one-file request is read and discarded up to this many more bytes, so that
#: a client still sending can read the 413 answer; beyond it the answer comes at once.
DRAIN = 32 << 20


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes, or the error that keeps it from being predicted."""

    filename: str
    data: bytes = b""
    error: ServiceError | None = None


@dataclass(frozen=True)
class UploadLimits:
    """The sizes one request may hold.

    Attributes:
        max_file_bytes: Largest structure file, also per archive member.
        max_files: Most files, archive members included.
        max_request_bytes: Largest body.
        max_unpacked_bytes: Most bytes all the request's archives may unpack to, together.
        max_part_bytes: Largest multipart part (an archive sent as a part may be this large);
            ``None``: ``max_file_bytes``.
        per: What the limits are per, for messages (``request``, ``job``).
    """

    max_file_bytes: int
    max_files: int
    max_request_bytes: int
    max_unpacked_bytes: int
    max_part_bytes: int | None = None
    per: str = "request"

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        """A predict request's limits."""
        return cls(
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.max_files,
            max_request_bytes=settings.max_request_bytes,
            max_unpacked_bytes=settings.max_unpacked_bytes,
        )

    @classmethod
    def for_jobs(cls, settings: Settings) -> UploadLimits:
        """A batch job's limits: larger bodies and archives; each file still ``max_file_bytes``."""
        return cls(
            max_file_bytes=settings.max_file_bytes,
            max_files=settings.jobs_max_files,
            max_request_bytes=settings.jobs_max_request_bytes,
            max_unpacked_bytes=settings.jobs_max_unpacked_bytes,
            max_part_bytes=settings.jobs_max_request_bytes,
            per="job",
        )

    @property
    def part_bytes(self) -> int:
        """Largest multipart file part: ``max_part_bytes``, or ``max_file_bytes`` when unset."""
        return self.max_part_bytes if self.max_part_bytes is not None else self.max_file_bytes

    @property
    def single_request_bytes(self) -> int:
        """Body cap of a one-file request: the file, JSON escaping and multipart headers."""
        return 2 * self.max_file_bytes + _FIELD_LIMIT

    def file_too_large(self, name: str, limit: int | None = None) -> FileTooLarge:
        """The error for a file over the size limit (returned, not raised).

        Args:
            name: The file as the message should name it (a filename, ``The file``).
            limit: The limit it broke, in bytes; ``None``: ``max_file_bytes``.

        Returns:
            A :class:`FileTooLarge` whose message names the file and the limit.
        """
        limit = self.max_file_bytes if limit is None else limit
        return FileTooLarge(f"{name} is larger than {limit:,} bytes, the limit per file.")


def check_length(request: Request, cap: int, error: ServiceError) -> None:
    """Refuse at once a body whose declared ``Content-Length`` is over ``cap``."""
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
        self._is_file = filename is not None
        if not self._is_file and self._name in _FILE_FIELDS:
            # A form field where the API documents a file (format: binary): text typed into a form
            # or a JSON value, never a structure file as any client or browser sends one.
            raise InvalidRequest(
                f"The multipart part {self._name!r} is a form field, not a file: send each structure as a file "
                f"part, with a filename (curl -F {self._name.rstrip('[]')}=@NaCl.cif)."
            )
        if self._is_file and len(self.uploads) >= self.limits.max_files:
            raise TooManyFiles(f"More than {self.limits.max_files} files in one request, the limit.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._too_large:
            return
        self._buf.extend(data[start:end])
        limit = self.limits.part_bytes if self._is_file else _FIELD_LIMIT
        if self._is_file and len(self._buf) > limit and archive_kind(self._filename or "", bytes(self._buf[:512])):
            limit = self.limits.max_request_bytes  # an archive part: its members are held to max_file_bytes
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
            self.uploads.append(Upload(name, error=self.limits.file_too_large(name, self.limits.part_bytes)))
        else:
            self.uploads.append(Upload(name, bytes(self._buf)))


async def read_multipart(
    stream: AsyncIterator[bytes], content_type: str, limits: UploadLimits, *, body_cap: int, cap_error: ServiceError
) -> list[Upload]:
    """The file parts of a ``multipart/form-data`` body, parsed as it streams in.

    A part with a filename is a file; a part named ``file``/``files`` without one is refused; a part over
    ``limits.part_bytes`` becomes an :class:`Upload` carrying ``file_too_large``.

    Raises:
        TooManyFiles: more than ``limits.max_files`` file parts.
        ServiceError: ``cap_error`` once the body passes ``body_cap`` bytes.
        InvalidRequest: a malformed body, or a ``file``/``files`` part that is a form field (no filename).
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
    except FormParserError as exc:  # MultipartParseError, and a boundary over 256 bytes
        raise InvalidRequest(f"The multipart body is malformed: {exc}.") from exc
    return collector.uploads
