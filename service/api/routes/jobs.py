"""``/v1/jobs``: durable batch-screening jobs (submit, follow, read results, cancel)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from ...jobs import JobList, JobService, JobStatus, read_job_files
from ...schemas import Problem
from ..deps import OwnerDep, SelectionDep, StrictDep
from ..openapi import FILES_UPLOAD_BODY

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

CSV = "text/csv"
NDJSON = "application/x-ndjson"


def get_jobs(request: Request) -> JobService:
    """The app's job service (a dependency)."""
    jobs: JobService = request.app.state.jobs
    return jobs


JobsDep = Annotated[JobService, Depends(get_jobs)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "job_not_found"}}


@router.post(
    "",
    status_code=202,
    summary="Submit CIFs (files or an archive) as a background job",
    responses={
        200: {"model": JobStatus, "description": "The Idempotency-Key named an existing job: that job."},
        400: {"model": Problem, "description": "archive_invalid"},
        404: {"model": Problem, "description": "unknown_model"},
        413: {"model": Problem, "description": "request_too_large, too_many_files"},
        415: {"model": Problem, "description": "unsupported_media_type"},
        503: {"model": Problem, "description": "not_ready"},
        507: {"model": Problem, "description": "storage_full"},
    },
    openapi_extra=FILES_UPLOAD_BODY,
)
async def create_job(
    request: Request,
    response: Response,
    jobs: JobsDep,
    selection: SelectionDep,
    owner: OwnerDep,
    strict: StrictDep,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retrying a submission with the same key returns the first job."),
    ] = None,
) -> JobStatus:
    """Multipart ``files`` (CIFs and/or ``.zip``/``.tar.gz`` archives), or one archive as the body.

    The job is stored before the answer (``202``, ``Location``); a file that cannot be predicted
    becomes a failed row, never a failed job.
    """
    files = await read_job_files(request, jobs.settings)
    status, created = await jobs.create(files, selection, idempotency_key=idempotency_key, owner=owner, strict=strict)
    response.status_code = 202 if created else 200
    response.headers["Location"] = status.links.self
    return status


@router.get("", summary="Recent jobs, newest first")
async def list_jobs(jobs: JobsDep, owner: OwnerDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobList:
    """The ``limit`` most recently submitted jobs with their state and progress (with API keys: the caller's)."""
    return JobList(jobs=await jobs.recent(limit, owner))


@router.get("/{job_id}", summary="A job's state, progress and timestamps", responses=_NOT_FOUND)
async def get_job(job_id: str, jobs: JobsDep, owner: OwnerDep) -> JobStatus:
    """One job's state, counts of files and structures done, and its timestamps."""
    return await jobs.get(job_id, owner)


@router.delete("/{job_id}", summary="Cancel a job and delete it with its results", responses=_NOT_FOUND)
async def delete_job(job_id: str, jobs: JobsDep, owner: OwnerDep) -> JobStatus:
    """Cancel the job if it is still running, then delete its inputs and results."""
    return await jobs.delete(job_id, owner)


@router.get(
    "/{job_id}/results",
    summary="Results so far, as CSV or NDJSON",
    response_class=StreamingResponse,
    responses={
        **_NOT_FOUND,
        200: {"content": {CSV: {"schema": {"type": "string"}}, NDJSON: {"schema": {"type": "string"}}}},
    },
)
async def job_results(
    job_id: str,
    request: Request,
    jobs: JobsDep,
    owner: OwnerDep,
    format: Annotated[
        Literal["csv", "ndjson"] | None, Query(description="Overrides the Accept header (default NDJSON).")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=2**62, description="Skip this many result rows (resume a download).")] = 0,
    header: Annotated[bool, Query(description="CSV: start with the header line.")] = True,
) -> StreamingResponse:
    """One row per structure, in the order they were computed; available while the job runs.

    Rows are only ever appended, so ``offset`` (rows already read) resumes a download. CSV:
    ``file, formula, n_sites``, ``<property>, <property>_model`` per property, ``error_code,
    error``. NDJSON: the ``BatchResult`` / ``BatchError`` items of ``/v1/predict/batch``.
    The ``Job-State`` header tells whether more rows may come.
    """
    fmt = format or ("csv" if CSV in request.headers.get("accept", "") else "ndjson")
    status, body = await jobs.results(job_id, fmt, offset=offset, header=header, owner=owner)
    headers = {"Job-State": status.state, "Job-Files-Done": str(status.counts.done)}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{job_id}.csv"'
    media = f"{CSV}; charset=utf-8" if fmt == "csv" else NDJSON
    return StreamingResponse(body, media_type=media, headers=headers)
