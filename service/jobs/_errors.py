"""Errors of the jobs API, in the service's one hierarchy (rendered by ``service.errors``)."""

from __future__ import annotations

from ..errors import NotFound, ServiceError

__all__ = ["JobNotFound", "StorageFull", "InputsMissing", "DataDirBusy", "ExecutorUnavailable"]


class JobNotFound(NotFound):
    code, title = "job_not_found", "Unknown job"


class StorageFull(ServiceError):
    """Storing this job would pass ``jobs_max_storage_bytes``."""

    status, code, title = 507, "storage_full", "Job storage is full"


class InputsMissing(ServiceError):
    """A job's uploaded inputs are gone from disk (the job fails; nothing else does)."""

    status, code, title = 500, "inputs_missing", "Job inputs are missing"


class DataDirBusy(ServiceError):
    """Another service process owns the data folder (its lock file is held)."""

    status, code, title = 503, "data_dir_busy", "Job storage is owned by another process"


class ExecutorUnavailable(ServiceError):
    """The executor of ``jobs_executor`` could not start; queued jobs say so (``waiting``) and wait for the next try."""

    status, code, title = 503, "executor_unavailable", "The job executor could not start"
