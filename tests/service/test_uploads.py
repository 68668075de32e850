"""Bounded body reading and streaming multipart parsing, without a server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from service.errors import FileTooLarge, InvalidRequest, RequestTooLarge, TooManyFiles
from service.uploads import UploadLimits, read_body, read_multipart

LIMITS = UploadLimits(max_file_bytes=100, max_files=3, max_request_bytes=10_000, max_unpacked_bytes=10_000)


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _multipart(files: list) -> tuple[bytes, str]:  # type: ignore[type-arg]
    request = httpx.Request("POST", "http://test/", files=files)
    return request.read(), request.headers["content-type"]


def _parse(files: list, limits: UploadLimits = LIMITS, cap: int = 10_000) -> list:  # type: ignore[type-arg]
    body, ctype = _multipart(files)
    err = RequestTooLarge("too large")
    return asyncio.run(read_multipart(_chunks(body), ctype, limits, body_cap=cap, cap_error=err))


def test_read_body_keeps_bodies_within_the_limit() -> None:
    assert asyncio.run(read_body(_chunks(b"x" * 100), 100, FileTooLarge("big"))) == b"x" * 100


def test_read_body_refuses_past_the_limit_after_draining() -> None:
    seen: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(10):
            seen.append(1)
            yield b"x" * 50

    with pytest.raises(FileTooLarge):
        asyncio.run(read_body(stream(), 100, FileTooLarge("big"), drain=1000))
    assert len(seen) == 10  # drained to the end, so the client can read the answer
    seen.clear()
    with pytest.raises(FileTooLarge):
        asyncio.run(read_body(stream(), 100, FileTooLarge("big"), drain=100))
    assert len(seen) == 5  # past limit + drain it stops reading at once


def test_multipart_files_in_order_with_names() -> None:
    uploads = _parse([("files", ("a.cif", b"A" * 10)), ("files", ("b.cif", b"B" * 100)), ("file", ("c", b"C"))])
    assert [(u.filename, u.data, u.error) for u in uploads] == [
        ("a.cif", b"A" * 10, None),
        ("b.cif", b"B" * 100, None),
        ("c", b"C", None),
    ]


@pytest.mark.parametrize("name", ["file", "files", "files[]"])
def test_a_file_field_sent_as_a_form_field_is_refused(name: str) -> None:
    """The API documents ``file``/``files`` as files: a part without a filename (``{}``, typed text) is a 422."""
    with pytest.raises(InvalidRequest, match=re.escape(f"'{name}' is a form field, not a file")):
        _parse([("files", ("a.cif", b"A")), (name, (None, b"{}"))])


def test_a_file_over_the_limit_carries_its_error_and_keeps_no_bytes() -> None:
    uploads = _parse([("files", ("big.cif", b"x" * 101)), ("files", ("ok.cif", b"y"))])
    assert uploads[0].data == b"" and isinstance(uploads[0].error, FileTooLarge)
    assert "big.cif" in uploads[0].error.detail
    assert uploads[1].data == b"y" and uploads[1].error is None


def test_too_many_files_stops_at_the_first_extra_part() -> None:
    with pytest.raises(TooManyFiles):
        _parse([("files", (f"{i}.cif", b"x")) for i in range(4)])


def test_body_cap_applies_while_streaming() -> None:
    with pytest.raises(RequestTooLarge):
        _parse([("files", (f"{i}.cif", b"x" * 90)) for i in range(3)], cap=200)


def test_text_fields_are_bounded_and_not_files() -> None:
    assert _parse([("note", (None, b"hello"))]) == []
    with pytest.raises(InvalidRequest):
        _parse([("note", (None, b"x" * (70 << 10)))], cap=1 << 20)


def test_malformed_multipart() -> None:
    err = RequestTooLarge("x")
    with pytest.raises(InvalidRequest, match="boundary"):
        asyncio.run(read_multipart(_chunks(b"x"), "multipart/form-data", LIMITS, body_cap=100, cap_error=err))
    with pytest.raises(InvalidRequest, match="malformed"):
        asyncio.run(
            read_multipart(
                _chunks(b"garbage\r\n" * 3), "multipart/form-data; boundary=zz", LIMITS, body_cap=1000, cap_error=err
            )
        )
