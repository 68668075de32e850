"""What a predict request carries: the structure file of ``/v1/predict``, the files of ``/v1/predict/batch``.

Dispatches on the content type to the bounded readers of :mod:`service.uploads`, and unpacks
archives (:mod:`service.archives`) into one upload per member. Batch requests and batch jobs
read their files here, through :func:`read_files`, each under its own :class:`UploadLimits`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Literal

from starlette.requests import Request

from .archives import Budget, archive_kind, unpack
from .errors import InvalidRequest, RequestTooLarge, TooManyFiles, UnsupportedMediaType
from .schemas import PredictRequest
from .uploads import DRAIN, Upload, UploadLimits, check_length, read_body, read_multipart

__all__ = ["ARCHIVE_TYPES", "json_upload", "expand", "read_single", "read_files", "read_batch"]

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
    """The one file of ``POST /v1/predict``.

    A multipart field ``file``, JSON ``{"cif"}`` or ``{"structure", "format"}``, or a raw body.

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
            raise InvalidRequest(
                f'The JSON body must be {{"cif": "<CIF text>"}} or {{"structure": ..., "format": ...}}: {exc}'
            ) from exc
        upload = json_upload(payload)
        if len(upload.data) > limits.max_file_bytes:
            raise too_large
        return upload
    if media in _CIF_TYPES:
        body = await read_body(request.stream(), limits.max_file_bytes, too_large, drain=DRAIN)
        # chemical/x-cif says CIF; other text types let the reader find the format from the content
        return Upload("upload.cif" if "cif" in media else "upload", body)
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not accepted: send multipart/form-data with a 'file' field, "
        'application/json {"cif": "..."}, or the CIF itself as text/plain or chemical/x-cif.'
    )


#: A file name that makes the reader choose each format of the JSON body's ``format``.
_FORMAT_NAMES = {
    "cif": "upload.cif",
    "poscar": "POSCAR",
    "extxyz": "upload.xyz",
    "pymatgen-json": "upload.json",
    "optimade-json": "upload.json",
    "json": "upload.json",
}


def json_upload(payload: PredictRequest) -> Upload:
    """The file a JSON body carries: ``cif`` text, or ``structure`` (text or a JSON object)."""
    if payload.cif is not None:
        return Upload(payload.filename or "upload.cif", payload.cif.encode("utf-8"))
    structure = payload.structure
    text = structure if isinstance(structure, str) else json.dumps(structure)
    fmt = payload.format or ("json" if not isinstance(structure, str) else None)
    name = _FORMAT_NAMES[fmt] if fmt is not None else (payload.filename or "upload")
    return Upload(name, text.encode("utf-8"))


def expand(uploads: list[Upload], limits: UploadLimits) -> list[Upload]:
    """Archives replaced by their members; every file held to ``max_file_bytes`` (run in a thread).

    One unpacked-bytes budget, ``limits.max_unpacked_bytes``, covers all the archives together.

    Raises:
        TooManyFiles: more than ``limits.max_files`` files.
        ArchiveInvalid: an archive that cannot be read, or the archives unpack past the budget.
    """
    out: list[Upload] = []
    budget = Budget(limits.max_unpacked_bytes)  # one for the whole request, charged on bytes produced
    for upload in uploads:
        kind = archive_kind(upload.filename, upload.data) if upload.error is None else None
        if kind is None:
            if upload.error is None and len(upload.data) > limits.max_file_bytes:
                out.append(Upload(upload.filename, error=limits.file_too_large(upload.filename)))
            else:
                out.append(upload)
        else:
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
            raise TooManyFiles(f"The {limits.per} holds more than {limits.max_files:,} files, the limit.")
    return out


async def read_files(request: Request, limits: UploadLimits) -> list[Upload]:
    """The files of a batch request or a job: multipart ``files`` (files and/or archives), or one archive body.

    Used by ``POST /v1/predict/batch`` (:class:`UploadLimits.from_settings`) and ``POST /v1/jobs``
    (:meth:`UploadLimits.for_jobs`).

    Raises:
        TooManyFiles, RequestTooLarge, ArchiveInvalid, InvalidRequest, UnsupportedMediaType.
    """
    media = _media_type(request)
    cap = limits.max_request_bytes
    too_large = RequestTooLarge(f"The upload is larger than {cap:,} bytes, the limit per {limits.per}.")
    check_length(request, cap, too_large)
    uploads: list[Upload]
    if media == "multipart/form-data":
        uploads = await read_multipart(
            request.stream(), request.headers["content-type"], limits, body_cap=cap, cap_error=too_large
        )
    elif media in ARCHIVE_TYPES:
        body = await read_body(request.stream(), cap, too_large)
        kind: Literal["zip", "tar"] | None = archive_kind("", body)
        if kind is None:
            raise UnsupportedMediaType("The body is not a zip or tar(.gz) archive.")
        uploads = [Upload("upload.zip" if kind == "zip" else "upload.tar.gz", body)]
    else:
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'} is not accepted: send multipart/form-data with one or more "
            "'files' (structure files, or .zip/.tar.gz archives of them), or an archive as application/zip "
            "or application/gzip."
        )
    files = await asyncio.to_thread(expand, uploads, limits) if uploads else []
    if not files:
        raise InvalidRequest(
            "The upload holds no file: send structure files, or archives of them, in fields named 'files'."
        )
    return files


async def read_batch(request: Request, limits: UploadLimits) -> list[Upload]:
    """The files of ``POST /v1/predict/batch`` (see :func:`read_files`)."""
    return await read_files(request, limits)
