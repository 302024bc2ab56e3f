"""What runs add to a pipeline's admin page: its recent runs with a duration trend, their
percentiles, and its schedules with their next fire times. Three indexed queries, whatever the
history: the newest runs on (pipeline, queued_at), the schedules by pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from fastflow_site.charts import DURATION_STEPS, Column, Segment, bar_chart
from fastflow_site.console import exact_time, format_duration, relative_time
from pipelines_app.models import Pipeline
from runs_app.models import PipelineRun, ScheduledJob
from runs_app.schedule_services import scheduledjob_next_fire_times

RECENT_RUNS = 50  # in the trend
LISTED_RUNS = 10  # in the table under it
NEXT_FIRES = 3


def axis_duration(seconds: float) -> str:
    """Round axis ticks: "0", "30 s", "2 min", "1.5 h"."""
    if seconds == 0:
        return "0"
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def run_url(run_id: object) -> str:
    return reverse("admin:runs_app_pipelinerun_change", args=[quote(run_id)])


def runs_list_url(**filters: str) -> str:
    url = reverse("admin:runs_app_pipelinerun_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def run_seconds(run: PipelineRun, now: datetime) -> float | None:
    """How long the run took, or has taken so far; None before it started."""
    if run.started_at is None:
        return None
    return ((run.finished_at or now) - run.started_at).total_seconds()


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of a few values (nearest rank): exact for the runs on the page."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def duration_trend(runs: list[PipelineRun], *, now: datetime) -> SafeString:
    """One bar per run, oldest on the left, its height the duration, its colour the status;
    each bar links to its run."""
    columns = []
    for run in reversed(runs):
        seconds = run_seconds(run, now)
        title = (
            f"{str(run.pk)[:8]} · {run.status} · {format_duration(seconds)} · queued "
            f"{exact_time(run.queued_at)}"
        )
        segments = (
            (Segment(seconds, f"ff-s-{run.status}", title, run_url(run.pk)),)
            if seconds is not None
            else ()
        )
        columns.append(
            Column(label=relative_time(run.queued_at, now=now), segments=segments, title=title)
        )
    return bar_chart(
        columns,
        label="Duration of the recent runs, oldest first",
        value_format=axis_duration,
        width=600,
        height=190,
        max_labels=5,
        css="ff-chart-trend",
        steps=DURATION_STEPS,
    )


@dataclass(frozen=True)
class ScheduleRow:
    job: ScheduledJob
    url: str
    next_fires: list[datetime]


def pipeline_schedule_rows(pipeline: Pipeline, *, now: datetime) -> list[ScheduleRow]:
    jobs = ScheduledJob.objects.filter(pipeline=pipeline).order_by("created_at")
    return [
        ScheduleRow(
            job=job,
            url=reverse("admin:runs_app_scheduledjob_change", args=[quote(job.pk)]),
            next_fires=(
                scheduledjob_next_fire_times(job=job, count=NEXT_FIRES, now=now)
                if job.enabled
                else []
            ),
        )
        for job in jobs
    ]


def pipeline_runs_context(pipeline: Pipeline) -> dict:
    """The template context of the pipeline page's run sections."""
    now = timezone.now()
    runs = list(
        PipelineRun.objects.filter(pipeline=pipeline)
        .order_by("-queued_at")
        .only(
            "id",
            "pipeline_id",
            "status",
            "triggered_by",
            "queued_at",
            "started_at",
            "finished_at",
            "exit_code",
            "cancel_requested_at",
        )[:RECENT_RUNS]
    )
    durations = [
        seconds
        for run in runs
        if run.is_terminal and (seconds := run_seconds(run, now)) is not None
    ]
    listed = [
        {"run": run, "url": run_url(run.pk), "seconds": run_seconds(run, now)}
        for run in runs[:LISTED_RUNS]
    ]
    return {
        "recent_runs": listed,
        "recent_count": len(runs),
        "trend_svg": duration_trend(runs, now=now) if runs else None,
        "recent_p50": quantile(durations, 0.5),
        "recent_p95": quantile(durations, 0.95),
        "last_run": runs[0] if runs else None,
        "schedule_rows": pipeline_schedule_rows(pipeline, now=now),
        "pipeline_runs_url": runs_list_url(pipeline__pipeline_name__exact=pipeline.pk),
        "pipeline_failed_runs_url": runs_list_url(
            pipeline__pipeline_name__exact=pipeline.pk, status__exact="FAILED"
        ),
        "schedule_add_url": reverse("admin:runs_app_scheduledjob_add")
        + f"?{urlencode({'pipeline': pipeline.pk})}",
    }
