"""Errors of discovery and pipeline.json parsing."""

from __future__ import annotations

from fastflow_site.errors import ServiceError


class SpecError(ValueError):
    """A pipeline.json (or cron expression) is invalid.

    The message names the file, the key and the reason, e.g.
    ``pipeline.json: key 'schedule_cron': expected 5 fields, got 3``. When several keys are
    wrong, `errors` lists each problem and the message joins them with "; ".
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


class PipelinesDirError(ServiceError):
    """The pipelines directory itself is unusable (missing, not a directory)."""

    code = "pipelines_dir_unusable"
    http_status = 503
