"""Durable batch-screening jobs: ``JobService`` stores uploads and results in SQLite and runs them."""

from __future__ import annotations

from ._errors import InputsMissing, JobNotFound, StorageFull
from ._export import csv_header
from ._ingest import read_job_files
from ._priority import InteractiveTraffic, InteractiveTrafficMiddleware
from ._service import JobService
from ._store import JobStore
from .schemas import FINISHED, JobCounts, JobLinks, JobList, JobState, JobStatus

__all__ = [
    "JobService",
    "InteractiveTraffic",
    "InteractiveTrafficMiddleware",
    "JobStore",
    "read_job_files",
    "csv_header",
    "JobNotFound",
    "StorageFull",
    "InputsMissing",
    "JobState",
    "JobCounts",
    "JobLinks",
    "JobStatus",
    "JobList",
    "FINISHED",
]
