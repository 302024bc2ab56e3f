"""What a notification says: title and body, built from the event's facts when it is first
sent (off every engine's critical path), then kept on the event so retries send the same.

What a message says about a run (status, exit code, log tail) comes from the runs app, which
registers it with `run_details_register` (this app sits below it and does not import it).
"""

from __future__ import annotations

from collections.abc import Callable

from notifications_app.models import NotificationEvent

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
    "daemon_crash_loop": "daemon is crash-looping",
    "test": "test notification",
}

RunDetails = Callable[[object, dict], list[str]]
_run_details: list[RunDetails] = []


def run_details_register(render: RunDetails) -> None:
    """Set what a message says about its run: `render(run_id, details) -> lines`."""
    _run_details[:] = [render]


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
        lines += (
            _run_details[0](event.run_id, details) if _run_details else [f"Run: {event.run_id}"]
        )
    for label, value in details.get("facts", {}).items():
        lines.append(f"{label}: {value}")
    return title, "\n".join(lines)
