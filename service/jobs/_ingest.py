"""A job's upload: the body of ``POST /v1/jobs`` read into files, archives unpacked, written to disk.

The body is read with the service's upload readers (limits enforced while the bytes arrive)
under the job limits, which are larger than a batch request's: ``jobs_max_request_bytes`` for
the body and for an archive part, ``jobs_max_files`` files and ``jobs_max_unpacked_bytes``
unpacked across all the archives of the job. Each CIF is still held to ``max_file_bytes``; a
larger one becomes a failed row (``file_too_large``) and the job goes on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from starlette.requests import Request

from ..archives import Budget, archive_kind, unpack
from ..errors import ArchiveInvalid, FileTooLarge, InvalidRequest, RequestTooLarge, TooManyFiles, UnsupportedMediaType
from ..intake import ARCHIVE_TYPES
from ..settings import Settings
from ..uploads import Upload, UploadLimits, read_body, read_multipart
from ._store import InputRow

__all__ = ["read_job_files", "write_inputs"]


def _too_large(name: str, limit: int) -> Upload:
    return Upload(name, error=FileTooLarge(f"{name} is larger than {limit:,} bytes, the limit per file."))


def _limits(max_file_bytes: int, max_files: int, max_bytes: int) -> UploadLimits:
    return UploadLimits(
        max_file_bytes=max_file_bytes, max_files=max_files, max_request_bytes=max_bytes, max_unpacked_bytes=max_bytes
    )


def _expand(uploads: Sequence[Upload], settings: Settings) -> list[Upload]:
    """Archives replaced by their members; every CIF checked against ``max_file_bytes``."""
    out: list[Upload] = []
    unpacked = 0
    budget = Budget(settings.jobs_max_unpacked_bytes)  # every decompressed byte of the job's archives
    for upload in uploads:
        kind = archive_kind(upload.filename, upload.data) if upload.error is None else None
        if kind is None:
            if upload.error is None and len(upload.data) > settings.max_file_bytes:
                out.append(_too_large(upload.filename, settings.max_file_bytes))
            else:
                out.append(upload)
        else:
            members = unpack(
                upload.filename,
                upload.data,
                max_file_bytes=settings.max_file_bytes,
                max_files=settings.jobs_max_files,
                max_unpacked_bytes=settings.jobs_max_unpacked_bytes,
                budget=budget,
            )
            for member in members:
                if member.data is None:
                    out.append(_too_large(member.name, settings.max_file_bytes))
                else:
                    unpacked += len(member.data)
                    out.append(Upload(member.name, member.data))
        if len(out) > settings.jobs_max_files:
            raise TooManyFiles(f"The job holds more than {settings.jobs_max_files:,} files, the limit per job.")
    if unpacked > settings.jobs_max_unpacked_bytes:
        raise ArchiveInvalid(f"The archives unpack to more than {settings.jobs_max_unpacked_bytes:,} bytes, the limit.")
    return out


async def read_job_files(request: Request, settings: Settings) -> list[Upload]:
    """The CIFs of ``POST /v1/jobs``: multipart ``files`` (CIFs and/or archives), or one archive body.

    Raises:
        TooManyFiles, RequestTooLarge, ArchiveInvalid, InvalidRequest, UnsupportedMediaType.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    cap = settings.jobs_max_request_bytes
    too_large = RequestTooLarge(f"The upload is larger than {cap:,} bytes, the limit per job.")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise too_large
    if media == "multipart/form-data":
        limits = _limits(cap, settings.jobs_max_files, cap)
        uploads = await read_multipart(
            request.stream(), request.headers["content-type"], limits, body_cap=cap, cap_error=too_large
        )
    elif media in ARCHIVE_TYPES:
        body = await read_body(request.stream(), cap, too_large)
        kind = archive_kind("", body)
        if kind is None:
            raise UnsupportedMediaType("The body is not a zip or tar(.gz) archive.")
        uploads = [Upload("upload.zip" if kind == "zip" else "upload.tar.gz", body)]
    else:
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'} is not accepted: send multipart/form-data with one or more "
            "'files' (CIFs, or .zip/.tar.gz archives), or one archive as application/zip or application/gzip."
        )
    files = await asyncio.to_thread(_expand, uploads, settings)
    if not files:
        raise InvalidRequest("The upload holds no file: send CIFs, or an archive of CIFs, in fields named 'files'.")
    return files


def write_inputs(path: Path, uploads: Sequence[Upload]) -> list[InputRow]:
    """Write every file's bytes one after another to ``path`` (fsynced) and say where each lies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[InputRow] = []
    with open(path, "wb") as fh:
        offset = 0
        for idx, upload in enumerate(uploads):
            error = upload.error
            rows.append(
                InputRow(
                    idx=idx,
                    filename=upload.filename,
                    offset=offset,
                    length=len(upload.data),
                    error_code=error.code if error is not None else None,
                    error_detail=error.detail if error is not None else None,
                )
            )
            fh.write(upload.data)
            offset += len(upload.data)
        fh.flush()
        os.fsync(fh.fileno())
    return rows
