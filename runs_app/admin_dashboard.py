"""The admin index as an operator's dashboard: what runs now, the queue, the engines and the
next schedule fires, and over a chosen window the runs per hour or day by status, the success
rate, p50/p95 duration and the failing pipelines. Every number links to the filtered run list
behind it.

Cost: a fixed number of queries whatever the history. The live numbers come from the
(status, queued_at) index (the queue and the running runs are small); the window's numbers from
`RunPeriodStats` (runs_app/period_stats.py: rows per pipeline, status and hour or day, written
when a run ends), never from a scan of pipeline_runs; the next fires are computed from the
enabled schedules (one row each).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.utils import quote
from django.db.models import Count, Min
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from fastflow_site.charts import Column, Segment, bar_chart
from runs_app.admin_pipeline_page import run_url, runs_list_url
from runs_app.models import EngineInstance, PipelineRun, RunStatus, ScheduledJob, StatsGranularity
from runs_app.period_stats import (
    TERMINAL,
    failing_pipelines,
    granularity_for,
    period_start,
    period_summary,
    queue_depth,
    runs_per_period,
)
from runs_app.schedule_services import scheduledjob_next_fire_times

# The windows offered, in the order shown; the first hourly, the longer ones daily.
WINDOWS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_WINDOW = "24h"
RUNNING_SHOWN = 8
NEXT_FIRES_SHOWN = 8


def dashboard_window(request: HttpRequest) -> str:
    """The window asked for in ?window=, or the default for anything else."""
    window = request.GET.get("window", DEFAULT_WINDOW)
    return window if window in WINDOWS else DEFAULT_WINDOW


@dataclass(frozen=True)
class EngineRow:
    engine: EngineInstance
    age_seconds: float
    stale: bool
    running: int


@dataclass(frozen=True)
class NextFire:
    job: ScheduledJob
    at: datetime
    url: str


def _admin_url(viewname: str, *args: object) -> str | None:
    try:
        return reverse(viewname, args=[quote(a) for a in args])
    except NoReverseMatch:
        return None


def live_context(*, now: datetime) -> dict:
    """Running runs, the queue and the oldest runnable pending run (indexed by status)."""
    running = PipelineRun.objects.filter(status=RunStatus.RUNNING)
    # In queue order: the (status, queued_at) index's, so no sort; nearly the start order.
    running_runs = list(
        running.order_by("queued_at").only(
            "id", "pipeline_id", "status", "started_at", "queued_at", "cancel_requested_at"
        )[:RUNNING_SHOWN]
    )
    depth = queue_depth(now=now)
    oldest = (
        PipelineRun.objects.due(now).order_by("queued_at").values_list("queued_at", flat=True)
    ).first()
    return {
        "running_count": depth["running"],
        "oldest_started_at": running.aggregate(first=Min("started_at"))["first"],
        "running_runs": [
            {
                "run": run,
                "url": run_url(run.pk),
                "seconds": (now - run.started_at).total_seconds() if run.started_at else None,
            }
            for run in running_runs
        ],
        "pending_count": depth["pending"],
        "delayed_count": depth["delayed"],
        "oldest_pending_at": oldest,
        "oldest_pending_seconds": (now - oldest).total_seconds() if oldest else None,
        "running_url": runs_list_url(status__exact=RunStatus.RUNNING),
        "pending_url": runs_list_url(status__exact=RunStatus.PENDING),
    }


def engines_context(*, now: datetime) -> dict:
    stale_after = settings.FASTFLOW_HEARTBEAT_STALE_SECONDS
    per_engine = dict(
        PipelineRun.objects.filter(status=RunStatus.RUNNING)
        .values_list("engine_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    rows = []
    for engine in EngineInstance.objects.order_by("-heartbeat_at"):
        age = (now - engine.heartbeat_at).total_seconds()
        rows.append(
            EngineRow(
                engine=engine,
                age_seconds=age,
                stale=age > stale_after,
                running=per_engine.get(engine.pk, 0),
            )
        )
    return {
        "engines": rows,
        "engines_alive": sum(not row.stale for row in rows),
        "engines_url": _admin_url("admin:runs_app_engineinstance_changelist"),
        "heartbeat_stale_seconds": stale_after,
    }


def next_fires(*, now: datetime, limit: int = NEXT_FIRES_SHOWN) -> list[NextFire]:
    """The next fire of every enabled schedule, soonest first."""
    fires = []
    for job in ScheduledJob.objects.filter(enabled=True).order_by():
        upcoming = scheduledjob_next_fire_times(job=job, count=1, now=now)
        if upcoming:
            url = reverse("admin:runs_app_scheduledjob_change", args=[quote(job.pk)])
            fires.append(NextFire(job=job, at=upcoming[0], url=url))
    fires.sort(key=lambda fire: fire.at)
    return fires[:limit]


def _window_url(since: datetime, until: datetime | None = None, **filters: str) -> str:
    """The run list behind a number of the window: the runs queued in [since, until), read off
    the list's own indexes (queued_at leads or follows every one of them). The statistics count
    a run in the period it ended, so a run queued just before a period's start and ended in it
    is listed under the period before (a filter on the end time would make the list sort every
    run of the window by queue time)."""
    bounds = {"queued_at__gte": since.isoformat()}
    if until is not None:
        bounds["queued_at__lt"] = until.isoformat()
    return runs_list_url(**filters, **bounds)


def _periods(since: datetime, now: datetime, granularity: str) -> list[datetime]:
    """Every period start from the one holding `since` to the current one."""
    step = timedelta(hours=1) if granularity == StatsGranularity.HOUR else timedelta(days=1)
    start, last = period_start(since, granularity), period_start(now, granularity)
    starts = []
    while start <= last:
        starts.append(start)
        start += step
    return starts


def runs_chart(*, since: datetime, now: datetime, granularity: str) -> SafeString:
    """Runs per hour or day stacked by status, every segment linked to its runs; periods
    without runs are drawn empty so the time axis is even."""
    step = timedelta(hours=1) if granularity == StatsGranularity.HOUR else timedelta(days=1)
    counts = {row["start"]: row for row in runs_per_period(since=since, period=granularity)}
    label_format = "%H:%M" if granularity == StatsGranularity.HOUR else "%b %d"
    columns = []
    for start in _periods(since, now, granularity):
        row = counts.get(start, {})
        when = f"{start:%Y-%m-%d %H:%M} UTC"
        segments = tuple(
            Segment(
                row[status],
                f"ff-s-{status}",
                f"{row[status]} {status.lower()} · {when}",
                _window_url(start, start + step, status__exact=status),
            )
            for status in TERMINAL
            if row.get(status)
        )
        columns.append(
            Column(label=start.strftime(label_format), segments=segments, title=f"{when}: none")
        )
    return bar_chart(
        columns,
        label=f"Runs per {granularity} by status",
        width=720,
        height=200,
        css="ff-chart-runs",
    )


def longest_first(request: HttpRequest, site: AdminSite) -> dict[str, str]:
    """The run list's sort parameter for "longest first": `o=-<n>`, n the duration column's
    place among the list's columns as this user sees them (the action checkbox is the first
    column when the user may act)."""
    run_admin = site.get_model_admin(PipelineRun)
    columns = list(run_admin.get_list_display(request))
    if run_admin.get_actions(request):
        columns.insert(0, "action_checkbox")
    return {"o": f"-{columns.index('duration_column')}"}


def window_context(*, window: str, now: datetime, sort_longest: dict[str, str]) -> dict:
    """The window's numbers, all from RunPeriodStats: a few rows per pipeline, status and
    hour or day. The window starts at the start of the hour (or, past two days, the UTC day)
    it reaches into: the statistics' resolution; the page says from when."""
    since_asked = now - WINDOWS[window]
    granularity = granularity_for(since_asked, now)
    since = period_start(since_asked, granularity)
    summary = period_summary(since=since)
    failing = [
        {
            **row,
            "success_percent": row["success_rate"] * 100,
            "pipeline_url": reverse("admin:pipelines_app_pipeline_change", args=[row["pipeline"]]),
            "failed_url": _window_url(
                since, pipeline__pipeline_name__exact=row["pipeline"], status__exact="FAILED"
            ),
            "runs_url": _window_url(since, pipeline__pipeline_name__exact=row["pipeline"]),
        }
        for row in failing_pipelines(since=since)
    ]
    return {
        "since": since,
        "summary": summary,
        "success_percent": (
            summary.success_rate * 100 if summary.success_rate is not None else None
        ),
        "period_label": granularity,
        "chart": runs_chart(since=since, now=now, granularity=granularity),
        "failing": failing,
        "runs_url": _window_url(since),
        "failed_url": _window_url(since, status__exact=RunStatus.FAILED),
        # The runs the percentiles are of: those with a duration (a descending sort would put
        # the others first on PostgreSQL).
        "slowest_url": _window_url(since, duration__isnull="false", **sort_longest),
    }


def dashboard_context(request: HttpRequest, *, site: AdminSite) -> dict:
    now = timezone.now()
    window = dashboard_window(request)
    return {
        "window": window,
        "windows": list(WINDOWS),
        "now": now,
        **live_context(now=now),
        **engines_context(now=now),
        "next_fires": next_fires(now=now),
        "stats": window_context(window=window, now=now, sort_longest=longest_first(request, site)),
        "schedules_url": reverse("admin:runs_app_scheduledjob_changelist"),
        "runs_url": runs_list_url(),
    }
