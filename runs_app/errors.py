"""Errors the run and schedule services raise; every interface maps them through the one
`ServiceError` contract (fastflow_site/errors.py)."""

from __future__ import annotations

from fastflow_site.errors import ServiceError


class RunError(ServiceError):
    """Base class of the run services' errors."""

    code = "run_error"


class PipelineNotFound(RunError):
    code = "pipeline_not_found"
    http_status = 404


class PipelineNotRunnable(RunError):
    """Disabled, broken (discovery error) or missing pipeline."""

    code = "pipeline_not_runnable"
    http_status = 409


class InvalidRunRequest(RunError):
    """Bad parameters or an unknown run configuration. `fields` maps field → message."""

    code = "invalid"


class LogFileMissing(RunError):
    """A finished run's recorded log is not in the run storage any more (file or object)."""

    code = "log_missing"
    http_status = 404


class RunStorageUnavailable(RunError):
    """The object store holding finished runs' output did not answer (FASTFLOW_RUN_STORAGE=s3)."""

    code = "run_storage_unavailable"
    http_status = 503


class RunStateConflict(RunError):
    """The transition is not allowed from the run's current status (e.g. cancel a finished run)."""

    code = "conflict"
    http_status = 409


class ScheduleError(ServiceError):
    """Base class of the schedule services' refusals (bad input stays a ValidationError)."""

    code = "schedule_error"


class ScheduleReadOnly(ScheduleError):
    """The schedule is defined in pipeline.json: discovery owns it, so it is not edited here."""

    code = "read_only"
    http_status = 409
