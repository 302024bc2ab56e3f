"""The scheduler leader's watch over RUNNING runs (running longer than expected, over the
memory soft limit, read from the new part of each metrics file since the last look), and the
run part of a notification message (masked log tail), rendered by the sender when it first
sends an event (registered with `notifications_app.messages` in `RunsAppConfig.ready`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from notifications_app.services import notification_event_emit
from runs_app.engine.logstream import Masker
from runs_app.environment import RunEnvironmentError, run_environment
from runs_app.models import PipelineRun, RunStatus
from runs_app.notify import effective_config, expected_seconds, notify_memory_soft_limit
from runs_app.run_output import LOG, METRICS, output_bytes, output_size

logger = logging.getLogger(__name__)

TAIL_BYTES = 64 * 1024


@dataclass
class _Tail:
    offset: int = 0
    peak: int = 0


@dataclass
class RunningWatch:
    """Checks RUNNING runs: past their expected time, over their memory soft limit (read from
    the new part of the metrics file since the last look)."""

    tails: dict[str, _Tail] = field(default_factory=dict)

    def check(self) -> int:
        now = timezone.now()
        emitted = 0
        running = list(
            PipelineRun.objects.filter(status=RunStatus.RUNNING, started_at__isnull=False)
            .select_related("pipeline")
            .order_by("started_at")
        )
        for run in running:
            try:
                emitted += self._check_run(run, now)
            except Exception:  # noqa: BLE001 - one odd run must not hide the others
                logger.exception("run %s: notification watch failed", run.id)
        alive = {str(run.id) for run in running}
        for run_id in set(self.tails) - alive:
            del self.tails[run_id]
        return emitted

    def _check_run(self, run: PipelineRun, now: datetime) -> int:
        emitted = 0
        elapsed = (now - run.started_at).total_seconds()
        expected = expected_seconds(run=run)
        if expected is not None and elapsed > expected:
            event = notification_event_emit(
                kind="long_running",
                key=f"run:{run.id}:long_running",
                pipeline_name=run.pipeline_id,
                run_id=run.id,
                run_config_id=run.run_config_id,
                summary=f"The run has been running for {elapsed:.0f} s; expected at most "
                f"{expected:.0f} s.",
            )
            emitted += event is not None
        effective = effective_config(run)
        limit = effective.mem_soft_limit if effective else None
        if limit:
            peak = self._peak(run)
            if peak > limit:
                emitted += notify_memory_soft_limit(run=run, used=peak, limit=limit) is not None
        return emitted

    def _peak(self, run: PipelineRun) -> int:
        tail = self.tails.setdefault(str(run.id), _Tail())
        data = output_bytes(run=run, stream=METRICS, offset=tail.offset)
        if not data:
            return tail.peak
        complete = data[: data.rfind(b"\n") + 1]
        tail.offset += len(complete)
        for line in complete.splitlines():
            try:
                value = json.loads(line).get("memory_bytes")
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(value, int) and value > tail.peak:
                tail.peak = value
        return tail.peak


# --- The run part of a message ------------------------------------------------------------


def run_page_url(run_id: object) -> str:
    return settings.FASTFLOW_BASE_URL + reverse(
        "admin:runs_app_pipelinerun_change", args=[str(run_id)]
    )


def log_tail(*, run: PipelineRun, lines: int) -> list[str]:
    """The last `lines` lines of the run's log, masked again with the run's secret values
    (the log was masked when written; a secret added since is masked too)."""
    if lines <= 0:
        return []
    text = _read_tail(run)
    if text is None:
        return []
    try:
        values = run_environment(run=run).mask_values
    except (RunEnvironmentError, ValueError) as exc:
        logger.info("run %s: masking with the written mask only (%s)", run.id, exc)
        values = ()
    masked = Masker(values).mask(text.encode()).decode("utf-8", "replace")
    return masked.splitlines()[-lines:]


def _read_tail(run: PipelineRun) -> str | None:
    size = output_size(run=run, stream=LOG)
    if size is None:
        return None
    data = output_bytes(run=run, stream=LOG, offset=max(size - TAIL_BYTES, 0)) or b""
    if size > TAIL_BYTES:
        data = data.partition(b"\n")[2]  # drop a partial first line
    return data.decode("utf-8", "replace")


def run_message_lines(run_id: object, details: dict) -> list[str]:
    """Status, exit code, trigger, error, the run page link and the masked log tail."""
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
