"""Errors the run services raise; every interface maps them to its own response."""

from __future__ import annotations


class RunError(Exception):
    """Base class. `code` is a stable machine-readable identifier for API error bodies."""

    code = "run_error"


class PipelineNotFound(RunError):
    code = "pipeline_not_found"


class PipelineNotRunnable(RunError):
    """Disabled, broken (discovery error) or missing pipeline."""

    code = "pipeline_not_runnable"


class InvalidRunRequest(RunError):
    """Bad parameters or an unknown run configuration. `fields` maps field → message."""

    code = "invalid"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class RunStateConflict(RunError):
    """The transition is not allowed from the run's current status (e.g. cancel a finished run)."""

    code = "conflict"
