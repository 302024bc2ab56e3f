"""The processes' own logs: human-readable lines (default) or one JSON object per line.

`FASTFLOW_LOG_FORMAT=json` switches the web process (runserver or gunicorn) and the engine to
`JsonFormatter`, for Loki / ELK. Each object carries what the record happened in: the request
id (web), the engine id (engine) and the run id and pipeline (an engine thread driving a run).
Those come from `log_context()` (per thread / per request, a context variable) and
`log_process_fields()` (the whole process); explicit `extra=` fields of a call win.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

CONTEXT_FIELDS = ("request_id", "engine_id", "run_id", "pipeline")
# Structured fields a call may pass with `extra=` (gunicorn's access log does).
EXTRA_FIELDS = (*CONTEXT_FIELDS, "method", "path", "status", "duration_ms", "remote_addr")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "fastflow_log_context", default=None
)
_process_fields: dict[str, str] = {}


def log_process_fields(**fields: str) -> None:
    """Fields every record of this process carries from now on (e.g. the engine id)."""
    _process_fields.update({k: v for k, v in fields.items() if v})


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Fields for the records logged inside the block, in this thread (or request)."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_fields() -> dict[str, str]:
    return {**_process_fields, **(_context.get() or {})}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(current_log_fields())
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_for(request: HttpRequest) -> str:
    """The caller's X-Request-ID when it is a sane token (a proxy's id ties the logs
    together), else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Tags every log record of a request with its id and returns the id in X-Request-ID."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request)
        request.request_id = request_id
        # Set for the rest of this thread's work on the request, not reset on the way out:
        # Django logs a 4xx/5xx answer (`django.request`) and gunicorn its access line after
        # the middleware returned. The next request on the thread replaces it.
        _context.set({"request_id": request_id})
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response
