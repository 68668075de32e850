"""What a predict request carries: the CIF of ``/v1/predict``, the CIFs of ``/v1/predict/batch``.

Dispatches on the content type to the bounded readers of :mod:`service.uploads`, and unpacks
archives (:mod:`service.archives`) into one upload per member.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from starlette.requests import Request

from .archives import Budget, archive_kind, unpack
from .errors import InvalidRequest, RequestTooLarge, TooManyFiles, UnsupportedMediaType
from .schemas import PredictRequest
from .uploads import DRAIN, Upload, UploadLimits, check_length, read_body, read_multipart

__all__ = ["ARCHIVE_TYPES", "read_single", "read_batch"]

_CIF_TYPES = {"text/plain", "chemical/x-cif", "application/x-cif", "application/cif", "application/octet-stream"}
#: Media types of a request body that is one archive (``octet-stream``: let the bytes decide).
ARCHIVE_TYPES = {
    "application/zip",
    "application/x-zip-compressed",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/x-gtar",
    "application/x-compressed-tar",
    "application/octet-stream",
}


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
    check_length(request, cap + DRAIN, too_large)
    if media == "multipart/form-data":
        uploads = await read_multipart(
            request.stream(), request.headers["content-type"], limits, body_cap=cap + DRAIN, cap_error=too_large
        )
        if not uploads:
            raise InvalidRequest("The multipart body has no file: send the CIF in the field 'file'.")
        if len(uploads) > 1:
            raise InvalidRequest("Send one file to /v1/predict; POST several to /v1/predict/batch.")
        if uploads[0].error is not None:
            raise uploads[0].error
        return uploads[0]
    if media == "application/json":
        body = await read_body(request.stream(), cap, too_large, drain=DRAIN)
        try:
            payload = PredictRequest.model_validate_json(body)
        except ValueError as exc:
            raise InvalidRequest(f'The JSON body must be {{"cif": "<CIF text>"}}: {exc}') from exc
        data = payload.cif.encode("utf-8")
        if len(data) > limits.max_file_bytes:
            raise too_large
        return Upload(payload.filename or "upload.cif", data)
    if media in _CIF_TYPES:
        body = await read_body(request.stream(), limits.max_file_bytes, too_large, drain=DRAIN)
        return Upload("upload.cif", body)
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not accepted: send multipart/form-data with a 'file' field, "
        'application/json {"cif": "..."}, or the CIF itself as text/plain or chemical/x-cif.'
    )


def _expand(uploads: list[Upload], limits: UploadLimits) -> list[Upload]:
    """Archives replaced by their members (run in a thread: decompression is CPU work)."""
    out: list[Upload] = []
    budget = Budget(limits.max_unpacked_bytes)  # one for the whole request, not one per archive
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
            budget=budget,
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
    check_length(request, limits.max_request_bytes, too_large)
    uploads: list[Upload]
    if media == "multipart/form-data":
        uploads = await read_multipart(
            request.stream(),
            request.headers["content-type"],
            limits,
            body_cap=limits.max_request_bytes,
            cap_error=too_large,
        )
    elif media in ARCHIVE_TYPES:
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
