"""The run timeline: one lane per pipeline, each run a bar from its start to its end (its queue
wait drawn lighter before it), over the last hour, six hours, day or week. Runs of one pipeline
that overlap go to lanes of their own under it, so concurrency shows.

Cost: the runs queued in the window, newest first on the queued_at index, at most MAX_RUNS
(the page says when it cut), plus the runs still running that were queued before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.admin.utils import quote
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from fastflow_site.charts import Lane, Span, timeline
from fastflow_site.console import exact_time, format_duration
from runs_app.admin_pipeline_page import run_url, runs_list_url
from runs_app.models import PipelineRun, RunStatus

WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_WINDOW = "6h"
MAX_RUNS = 2000
MAX_SUBLANES = 4  # overlapping runs of one pipeline beyond this share the last lane


@dataclass(frozen=True)
class TimelineData:
    svg: object
    window: str
    since: datetime
    until: datetime
    runs: int
    capped: bool
    pipeline: str | None


@dataclass(frozen=True)
class TimelineRun:
    """What the timeline draws of a run (read as plain values: up to MAX_RUNS of them)."""

    pk: object
    pipeline_id: str
    status: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


FIELDS = ("id", "pipeline_id", "status", "queued_at", "started_at", "finished_at")


def run_url_for() -> Callable[[object], str]:
    """The run page URL of a run id, reversed once for all bars (reverse() per bar was half of
    the page's time at 2,000 runs)."""
    marker = "00000000-0000-0000-0000-000000000000"
    template = run_url(marker)
    return lambda pk: template.replace(marker, quote(str(pk)))


def _title(run: TimelineRun, now: datetime) -> str:
    parts = [f"{run.pipeline_id} {str(run.pk)[:8]} · {run.status}"]
    parts.append(f"queued {exact_time(run.queued_at)}")
    if run.started_at:
        end = run.finished_at or now
        parts.append(f"ran {format_duration((end - run.started_at).total_seconds())}")
    return " · ".join(parts)


def _lanes(runs: list[TimelineRun], *, now: datetime, pipeline: str | None) -> list[Lane]:
    """Lanes per pipeline (alphabetical); runs that overlap within a pipeline are spread over
    up to MAX_SUBLANES lanes (first fit by start time)."""
    run_url_of = run_url_for()
    by_pipeline: dict[str, list[TimelineRun]] = {}
    for run in sorted(runs, key=lambda r: r.started_at or r.queued_at):
        by_pipeline.setdefault(run.pipeline_id, []).append(run)
    lanes: list[Lane] = []
    for name in sorted(by_pipeline):
        ends: list[datetime] = []
        sub: list[Lane] = []
        link = (
            reverse("admin:pipelines_app_pipeline_change", args=[quote(name)])
            if pipeline
            else f"?{urlencode({'pipeline': name})}"
        )
        for run in by_pipeline[name]:
            start = run.started_at or now
            end = run.finished_at or now
            wait_from = run.queued_at
            index = next((i for i, free in enumerate(ends) if free <= wait_from), None)
            if index is None:
                if len(ends) < MAX_SUBLANES:
                    ends.append(end)
                    sub.append(Lane(label="" if sub else name, href=None if sub else link))
                    index = len(ends) - 1
                else:
                    index = len(ends) - 1
            ends[index] = max(ends[index], end)
            sub[index].spans.append(
                Span(
                    start=start if run.started_at else now,
                    end=end if run.started_at else now,
                    css=f"ff-s-{run.status}",
                    title=_title(run, now),
                    href=run_url_of(run.pk),
                    wait_from=wait_from,
                )
            )
        lanes.extend(sub)
    return lanes


def timeline_window(request: HttpRequest) -> str:
    window = request.GET.get("window", DEFAULT_WINDOW)
    return window if window in WINDOWS else DEFAULT_WINDOW


def timeline_data(*, window: str, pipeline: str | None = None) -> TimelineData:
    now = timezone.now()
    since = now - WINDOWS[window]
    runs = PipelineRun.objects.filter(
        Q(queued_at__gte=since) | Q(status=RunStatus.RUNNING, queued_at__lt=since)
    )
    if pipeline:
        runs = runs.filter(pipeline_id=pipeline)
    rows = [
        TimelineRun(*values)
        for values in runs.order_by("-queued_at").values_list(*FIELDS)[: MAX_RUNS + 1]
    ]
    capped = len(rows) > MAX_RUNS
    rows = rows[:MAX_RUNS]
    hours = WINDOWS[window] <= timedelta(hours=24)

    def time_format(moment: datetime) -> str:
        local = moment.astimezone(timezone.get_current_timezone())
        return local.strftime("%H:%M") if hours else local.strftime("%a %d %H:%M")

    svg = timeline(
        _lanes(rows, now=now, pipeline=pipeline),
        since=since,
        until=now,
        label=f"Runs of the last {window}" + (f" of {pipeline}" if pipeline else ""),
        time_format=time_format,
    )
    return TimelineData(
        svg=svg,
        window=window,
        since=since,
        until=now,
        runs=len(rows),
        capped=capped,
        pipeline=pipeline,
    )


def timeline_context(request: HttpRequest) -> dict:
    pipeline = request.GET.get("pipeline") or None
    data = timeline_data(window=timeline_window(request), pipeline=pipeline)
    filters = {"pipeline__pipeline_name__exact": pipeline} if pipeline else {}
    return {
        "timeline": data,
        "windows": list(WINDOWS),
        "runs_url": runs_list_url(**filters),
        "pipeline_url": (
            reverse("admin:pipelines_app_pipeline_change", args=[quote(pipeline)])
            if pipeline
            else None
        ),
    }
