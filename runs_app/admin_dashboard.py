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
from django.contrib.admin.utils import quote
from django.db.models import Count
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from runs_app.admin_pipeline_page import run_url, runs_list_url
from runs_app.models import EngineInstance, PipelineRun, RunStatus, ScheduledJob
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
    running_runs = list(
        PipelineRun.objects.filter(status=RunStatus.RUNNING)
        .order_by("started_at", "queued_at")
        .only("id", "pipeline_id", "status", "started_at", "queued_at", "cancel_requested_at")[
            :RUNNING_SHOWN
        ]
    )
    running = PipelineRun.objects.filter(status=RunStatus.RUNNING).count()
    due = PipelineRun.objects.due(now)
    pending = due.count()
    delayed = PipelineRun.objects.filter(status=RunStatus.PENDING, not_before__gt=now).count()
    oldest = due.order_by("queued_at").values_list("queued_at", flat=True).first()
    return {
        "running_count": running,
        "running_runs": [
            {
                "run": run,
                "url": run_url(run.pk),
                "seconds": (now - run.started_at).total_seconds() if run.started_at else None,
            }
            for run in running_runs
        ],
        "pending_count": pending,
        "delayed_count": delayed,
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


def dashboard_context(request: HttpRequest) -> dict:
    now = timezone.now()
    window = dashboard_window(request)
    return {
        "window": window,
        "windows": list(WINDOWS),
        "now": now,
        **live_context(now=now),
        **engines_context(now=now),
        "next_fires": next_fires(now=now),
        "schedules_url": reverse("admin:runs_app_scheduledjob_changelist"),
        "runs_url": runs_list_url(),
    }
