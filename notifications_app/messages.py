"""What a notification says: title and body, built from the event's facts when it is first
sent (off every engine's critical path), then kept on the event so retries send the same."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.urls import reverse

from notifications_app.models import NotificationEvent
from runs_app.engine.logstream import Masker
from runs_app.environment import RunEnvironmentError, run_environment
from runs_app.logs import data_file
from runs_app.models import PipelineRun

logger = logging.getLogger(__name__)

TAIL_BYTES = 64 * 1024
TITLES = {
    "run_failed": "run failed",
    "retries_exhausted": "run failed after all its retries",
    "run_recovered": "recovered: run succeeded again",
    "run_succeeded": "run succeeded",
    "schedule_late": "schedule tick late or missed",
    "long_running": "run is taking longer than expected",
    "memory_soft_limit": "run exceeded its memory soft limit",
    "engine_silent": "engine went silent",
    "cache_warmup_failed": "dependency cache warm-up failed",
    "test": "test notification",
}


def run_page_url(run_id: object) -> str:
    return settings.FASTFLOW_BASE_URL + reverse(
        "admin:runs_app_pipelinerun_change", args=[str(run_id)]
    )


def log_tail(*, run: PipelineRun, lines: int) -> list[str]:
    """The last `lines` lines of the run's log, masked again with the run's secret values
    (the log was masked when written; a secret added since is masked too)."""
    path = data_file(run.log_file)
    if path is None or lines <= 0:
        return []
    text = _read_tail(path)
    try:
        values = run_environment(run=run).mask_values
    except (RunEnvironmentError, ValueError) as exc:
        logger.info("run %s: masking with the written mask only (%s)", run.id, exc)
        values = ()
    masked = Masker(values).mask(text.encode()).decode("utf-8", "replace")
    return masked.splitlines()[-lines:]


def _read_tail(path: Path) -> str:
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(size - TAIL_BYTES, 0))
        data = fh.read()
    if size > TAIL_BYTES:
        data = data.partition(b"\n")[2]  # drop a partial first line
    return data.decode("utf-8", "replace")


def _run_lines(run_id: object, details: dict) -> list[str]:
    run = PipelineRun.objects.filter(id=run_id).first()
    if run is None:
        return [f"Run: {run_id} (deleted since)"]
    lines = [
        f"Run: {run.id}",
        f"Status: {run.status}",
        f"Exit code: {'-' if run.exit_code is None else run.exit_code}",
        f"Triggered by: {run.triggered_by}"
        + (f" (retry {run.retry_attempt})" if run.retry_attempt else ""),
    ]
    if run.run_config_id:
        lines.append(f"Run configuration: {run.run_config_id}")
    if run.error_message:
        lines.append(f"Error: {run.error_message}")
    lines.append(f"Run page: {run_page_url(run.id)}")
    if details.get("with_log", True):
        tail = log_tail(run=run, lines=settings.FASTFLOW_NOTIFY_LOG_LINES)
        if tail:
            lines += ["", f"Last {len(tail)} log lines:", *tail]
    return lines


def message_render(*, event: NotificationEvent) -> tuple[str, str]:
    """(title, body) of an event."""
    what = TITLES.get(event.kind, event.kind)
    subject = f" {event.pipeline_name}:" if event.pipeline_name else ""
    title = f"[Fast-Flow]{subject} {what}"[:255]
    details = event.details or {}
    lines = [details.get("summary") or what.capitalize() + "."]
    if event.pipeline_name:
        lines.append(f"Pipeline: {event.pipeline_name}")
    if event.run_id:
        lines += _run_lines(event.run_id, details)
    for label, value in details.get("facts", {}).items():
        lines.append(f"{label}: {value}")
    return title, "\n".join(lines)
