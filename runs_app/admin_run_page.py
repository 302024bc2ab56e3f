"""The run page's live panels: the heading with status and buttons, the facts (trigger, times,
duration, exit code, error), and the CPU/RAM charts with axes, units and the limits in force.

The page renders them once; while the run is live, run_page.js asks `<run>/panels/` for them
again every two seconds and swaps them in, so everything on the page follows the run without a
reload, rendered by the same templates (one wording, one formatting, in Python)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.admin.utils import quote
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from fastflow_site.charts import Limit, line_chart
from fastflow_site.console import format_bytes, format_duration
from pipelines_app.errors import SpecError
from runs_app.admin_display import limits_summary, resource_summary
from runs_app.errors import RunStorageUnavailable
from runs_app.logs import parse_timestamp
from runs_app.models import PipelineRun
from runs_app.run_output import METRICS, metrics_missing, metrics_read, output_size

MIB = 1024 * 1024
PANELS = ("head", "facts", "resources")


@dataclass(frozen=True)
class RunLimits:
    cpus: float | None
    memory_bytes: int | None


def run_limits(run: PipelineRun) -> RunLimits:
    """The hard limits drawn on the run's charts: those its executor enforced, as recorded when
    it started (`PipelineRun.limits`); before that, its configuration's in pipeline.json."""
    if run.limits:
        return RunLimits(run.limits.get("cpus"), run.limits.get("memory_bytes"))
    try:
        effective = run.pipeline.spec.effective(run.run_config_id or None)
    except (SpecError, KeyError):
        return RunLimits(None, None)
    return RunLimits(effective.cpu_hard_limit, effective.mem_hard_limit)


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _series(samples: list[dict], key: str, origin: datetime | None) -> list[tuple[float, float]]:
    """(seconds since the run started, value) for every sample with a time and a number."""
    points = []
    for sample in samples:
        value = sample.get(key)
        if not isinstance(value, int | float):
            continue
        try:
            at = parse_timestamp(str(sample.get("ts", "")))
        except ValueError:
            continue
        origin = origin or at
        points.append(((at - origin).total_seconds(), float(value)))
    return points


def resources_context(run: PipelineRun) -> dict:
    try:
        samples = metrics_read(run=run)
        has_file = output_size(run=run, stream=METRICS) is not None
        missing = metrics_missing(run=run)
    except RunStorageUnavailable as exc:  # the charts say so; the rest of the page shows
        samples, has_file, missing, storage_error = [], False, False, str(exc)
    else:
        storage_error = ""
    summary = resource_summary(samples=samples, peak_memory_bytes=run.peak_memory_bytes)
    limits = run_limits(run)
    cpu = _series(samples, "cpu_percent", run.started_at)
    memory = [(x, y / MIB) for x, y in _series(samples, "memory_bytes", run.started_at)]
    cpu_limit = Limit(limits.cpus * 100, f"limit {limits.cpus:g} CPU") if limits.cpus else None
    memory_limit = (
        Limit(limits.memory_bytes / MIB, f"limit {format_bytes(limits.memory_bytes)}")
        if limits.memory_bytes
        else None
    )
    return {
        "summary": summary,
        "has_metrics_file": has_file,
        "metrics_missing": missing,
        "metrics_storage_error": storage_error,
        "limits_text": limits_summary(run.limits) if run.limits else None,
        "cpu_chart": line_chart(
            cpu,
            label="CPU use, % of one core, over the run",
            value_format=lambda v: f"{v:g} %",
            x_format=_elapsed,
            limit=cpu_limit,
            floor_top=100.0,  # one busy core reaches the top: 0.1 % never looks like a lot
            css="ff-chart-cpu",
        ),
        "memory_chart": line_chart(
            memory,
            label="Memory (resident), MiB, over the run",
            value_format=lambda v: f"{v:g} MiB",
            x_format=_elapsed,
            limit=memory_limit,
            floor_top=64.0,
            css="ff-chart-mem",
        ),
        "cpu_limit": limits.cpus,
        "memory_limit": limits.memory_bytes,
    }


def run_page_context(
    *, run: PipelineRun, can_cancel: bool, can_retry: bool, now: datetime | None = None
) -> dict:
    now = now or timezone.now()
    pk = quote(run.pk)
    seconds = None
    if run.started_at is not None:
        seconds = ((run.finished_at or now) - run.started_at).total_seconds()
    wait = None
    if run.started_at is not None:
        wait = (run.started_at - run.queued_at).total_seconds()
    return {
        "run": run,
        "now": now,
        "run_seconds": seconds,
        "wait_seconds": wait,
        "duration_text": format_duration(seconds),
        "can_cancel": can_cancel and not run.is_terminal,
        "can_retry": can_retry and run.is_terminal,
        "cancel_url": reverse("admin:runs_app_pipelinerun_cancel", args=[pk]),
        "retry_url": reverse("admin:runs_app_pipelinerun_retry", args=[pk]),
        "panels_url": reverse("admin:runs_app_pipelinerun_panels", args=[pk]),
        "metrics_download_url": reverse("admin:runs_app_pipelinerun_metrics_download", args=[pk]),
        "pipeline_url": reverse(
            "admin:pipelines_app_pipeline_change", args=[quote(run.pipeline_id)]
        ),
        **resources_context(run),
    }


def render_panels(*, request: HttpRequest, context: dict) -> dict[str, SafeString]:
    return {
        name: render_to_string(
            f"admin/runs_app/pipelinerun/panel_{name}.html", context, request=request
        )
        for name in PANELS
    }
