"""Bodies of the jobs API (``/v1/jobs``); results themselves are ``BatchItem`` lines or CSV rows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..schemas import Notice

__all__ = ["JobState", "JobCounts", "JobLinks", "JobStatus", "JobList", "FINISHED"]

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
#: States a job never leaves.
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class JobCounts(BaseModel):
    """Progress of a job.

    ``total`` and ``done`` count input files (``done / total`` is the progress); ``ok`` and
    ``failed`` count result rows, one per structure (a CIF with several data blocks gives
    several rows; a file that cannot be read gives one failed row).
    """

    total: int = Field(description="Input files, archive members included.")
    done: int = Field(description="Input files processed so far.")
    ok: int = Field(description="Structures predicted so far.")
    failed: int = Field(description="Structures or files that could not be predicted so far.")


class JobLinks(BaseModel):
    """Where to follow a job: its status and its results."""

    self: str = Field(examples=["/v1/jobs/3f2a..."])
    results: str = Field(examples=["/v1/jobs/3f2a.../results"])


class JobStatus(BaseModel):
    """One batch-screening job (times are UTC)."""

    id: str
    state: JobState
    counts: JobCounts
    models: list[str] = Field(description="Models asked for (``[]``: the default model of each property).")
    properties: list[str] = Field(description="Properties in the results, in CSV column order.")
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    expires: datetime | None = Field(None, description="When a finished job will be deleted.")
    error: Notice | None = Field(None, description="Why the whole job failed (state ``failed``).")
    queue_position: int | None = Field(
        None,
        description="For a queued job: unfinished jobs submitted before it (0: it starts next). Jobs take turns "
        "chunk by chunk, so it starts once each of them has run one more chunk.",
    )
    waiting: Notice | None = Field(
        None,
        description="For a queued job: why no job can start now (``executor_unavailable``: the Ray cluster "
        "could not be joined, or its actors not placed); the service tries again about a minute later.",
    )
    executor: Literal["inprocess", "ray"] | None = Field(
        None,
        description="What ran the job: this process (``inprocess``) or a Ray cluster (``ray``); null until it starts.",
    )
    strict: bool = Field(
        False, description="Structures the reader has warnings about are failed rows (the warning's code)."
    )
    links: JobLinks


class JobList(BaseModel):
    """Recent jobs, newest first."""

    jobs: list[JobStatus]
