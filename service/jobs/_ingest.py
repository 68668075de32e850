"""A job's upload: the body of ``POST /v1/jobs`` read into files, archives unpacked, written to disk.

The body is read with the service's upload readers (limits enforced while the bytes arrive)
under the job limits, which are larger than a batch request's: ``jobs_max_request_bytes`` for
the body and for an archive part, ``jobs_max_files`` files and ``jobs_max_unpacked_bytes``
unpacked across all the archives of the job. Each CIF is still held to ``max_file_bytes``; a
larger one becomes a failed row (``file_too_large``) and the job goes on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from starlette.requests import Request

from ..intake import read_files
from ..settings import Settings
from ..uploads import Upload, UploadLimits
from ._store import InputRow

__all__ = ["read_job_files", "write_inputs"]


async def read_job_files(request: Request, settings: Settings) -> list[Upload]:
    """The files of ``POST /v1/jobs``: the batch intake (:func:`service.intake.read_files`) under job limits.

    Raises:
        TooManyFiles, RequestTooLarge, ArchiveInvalid, InvalidRequest, UnsupportedMediaType.
    """
    return await read_files(request, UploadLimits.for_jobs(settings))


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
