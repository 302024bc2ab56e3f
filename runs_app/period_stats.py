"""Run statistics per hour and day that never scan the run history (for the dashboard).

`run_period_stats_record` keeps `RunPeriodStats` up to date when a run ends: for its pipeline
and status, one row for the UTC hour and one for the UTC day it ended in, each with the run
count, the duration sum and a duration histogram, counted with F() + 1 in the finishing
transaction. The readers below answer the dashboard's questions (runs per hour or day by
status, success rate, p50/p95 duration, failing pipelines) from those rows — windows up to two
days from the hourly rows, longer ones from the daily rows — and the queue depth from the
(status, queued_at) index. A window costs pipelines × statuses rows per hour or day in it,
whatever the number of runs. (/metrics' all-time counters are a separate concern.)
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from fastflow_site.db import counters_add
from runs_app.models import (
    DURATION_BUCKETS,
    OVERFLOW_BUCKET,
    PipelineRun,
    RunPeriodStats,
    RunStatus,
    StatsGranularity,
)

BUCKET_COLUMNS: tuple[str, ...] = (*(name for name, _ in DURATION_BUCKETS), OVERFLOW_BUCKET)
_BOUNDS = tuple(bound for _, bound in DURATION_BUCKETS)
TERMINAL = (RunStatus.SUCCESS.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)
# Longer windows read the daily rows: 30 days are 30 rows per pipeline and status, not 720.
HOURLY_UP_TO = timedelta(days=2)
# Hourly rows older than this are deleted (period_stats_prune, by the leader every hour): the
# daily rows keep their totals, and the table stays a few days of hours plus one row per
# pipeline, status and day.
HOURLY_KEPT = timedelta(days=14)


def duration_column(duration: float) -> str:
    """The histogram column counting a run of `duration` seconds."""
    return BUCKET_COLUMNS[bisect_left(_BOUNDS, duration)]


def period_start(moment: datetime, granularity: str) -> datetime:
    start = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start if granularity == StatsGranularity.HOUR else start.replace(hour=0)


def run_period_stats_record(*, run: PipelineRun) -> None:
    """Count a run that just reached its terminal status (call inside that transaction): its
    hour's and its day's row, in one statement."""
    ended = run.finished_at or timezone.now()
    counters = dict.fromkeys(BUCKET_COLUMNS, 0)
    if run.duration is not None:
        counters[duration_column(run.duration)] = 1
    counters |= {"runs": 1, "duration_sum": run.duration or 0.0}
    counters_add(
        RunPeriodStats,
        rows=[
            {
                "granularity": granularity,
                "period_start": period_start(ended, granularity),
                "pipeline_id": run.pipeline_id,
                "status": run.status,
                **counters,
            }
            for granularity in StatsGranularity.values
        ],
        key=("granularity", "period_start", "pipeline", "status"),
        add=tuple(counters),
    )


def period_stats_prune(*, now: datetime | None = None) -> int:
    """Delete the hourly rows older than HOURLY_KEPT; returns how many went."""
    cutoff = period_start((now or timezone.now()) - HOURLY_KEPT, StatsGranularity.HOUR)
    deleted, _ = RunPeriodStats.objects.filter(
        granularity=StatsGranularity.HOUR, period_start__lt=cutoff
    ).delete()
    return deleted


# --- Reading -------------------------------------------------------------------------------------


def granularity_for(since: datetime, until: datetime | None = None) -> str:
    span = (until or timezone.now()) - since
    return StatsGranularity.HOUR if span <= HOURLY_UP_TO else StatsGranularity.DAY


def period_stats_rows(
    *,
    since: datetime,
    until: datetime | None = None,
    granularity: str | None = None,
    pipeline: str | None = None,
) -> QuerySet[RunPeriodStats]:
    """The rows of the periods from the one holding `since` until `until` (exclusive); a
    daily window therefore starts at midnight UTC of `since`'s day. Hourly rows are kept for
    HOURLY_KEPT only."""
    granularity = granularity or granularity_for(since, until)
    rows = RunPeriodStats.objects.filter(
        granularity=granularity, period_start__gte=period_start(since, granularity)
    )
    if until is not None:
        rows = rows.filter(period_start__lt=until)
    if pipeline is not None:
        rows = rows.filter(pipeline_id=pipeline)
    return rows.order_by()


def runs_per_period(
    *,
    since: datetime,
    until: datetime | None = None,
    period: str = StatsGranularity.HOUR,
    pipeline: str | None = None,
) -> list[dict]:
    """[{"start", "SUCCESS": n, "FAILED": n, "CANCELLED": n, "total": n}] per UTC hour or day,
    oldest first; periods without runs are left out."""
    if period not in StatsGranularity.values:
        raise ValueError(f"period must be one of {', '.join(StatsGranularity.values)}")
    counts: dict[datetime, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TERMINAL, 0))
    rows = (
        period_stats_rows(since=since, until=until, granularity=period, pipeline=pipeline)
        .values("period_start", "status")
        .annotate(n=Sum("runs"))
    )
    for row in rows:
        counts[row["period_start"]][row["status"]] += row["n"]
    return [
        {"start": start, **by_status, "total": sum(by_status.values())}
        for start, by_status in sorted(counts.items())
    ]


@dataclass(frozen=True)
class StatsSummary:
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    # succeeded / (succeeded + failed): a cancelled run says nothing about the pipeline.
    success_rate: float | None
    duration_mean: float | None
    duration_p50: float | None
    duration_p95: float | None


def period_summary(
    *, since: datetime, until: datetime | None = None, pipeline: str | None = None
) -> StatsSummary:
    """Totals, success rate and duration percentiles (of runs that started) over a window.

    The percentiles are estimated from the histogram: linear within the bucket the quantile
    falls in, so the error is at most that bucket's width (e.g. 60–120 s).
    """
    sums = {column: Sum(column) for column in ("runs", "duration_sum", *BUCKET_COLUMNS)}
    rows = period_stats_rows(since=since, until=until, pipeline=pipeline).values("status")
    by_status: dict[str, int] = defaultdict(int)
    histogram = dict.fromkeys(BUCKET_COLUMNS, 0)
    seconds = 0.0
    for row in rows.annotate(**sums):
        by_status[row["status"]] += row["runs"]
        seconds += row["duration_sum"] or 0.0
        for column in BUCKET_COLUMNS:
            histogram[column] += row[column]
    succeeded, failed = by_status[RunStatus.SUCCESS], by_status[RunStatus.FAILED]
    timed = sum(histogram.values())
    return StatsSummary(
        runs=sum(by_status.values()),
        succeeded=succeeded,
        failed=failed,
        cancelled=by_status[RunStatus.CANCELLED],
        success_rate=succeeded / (succeeded + failed) if succeeded + failed else None,
        duration_mean=seconds / timed if timed else None,
        duration_p50=histogram_quantile(histogram, 0.5),
        duration_p95=histogram_quantile(histogram, 0.95),
    )


def histogram_quantile(histogram: dict[str, int], q: float) -> float | None:
    """The q-quantile of the durations counted per bucket column, interpolated linearly
    within its bucket; in the open last bucket, its lower bound (one day)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen, low = q * total, 0, 0.0
    for column, high in (*DURATION_BUCKETS, (OVERFLOW_BUCKET, None)):
        n = histogram.get(column, 0)
        if n and seen + n >= rank:
            return low if high is None else low + (high - low) * max(rank - seen, 0) / n
        seen += n
        low = float(high) if high is not None else low
    return low


def failing_pipelines(
    *, since: datetime, until: datetime | None = None, limit: int = 10
) -> list[dict]:
    """Pipelines with failed runs in the window, most failures first:
    [{"pipeline", "failed", "runs", "success_rate"}]."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = (
        period_stats_rows(since=since, until=until)
        .values("pipeline_id", "status")
        .annotate(n=Sum("runs"))
    )
    for row in rows:
        totals[row["pipeline_id"]][row["status"]] += row["n"]
    failing = [
        {
            "pipeline": name,
            "failed": counts[RunStatus.FAILED],
            "runs": sum(counts.values()),
            "success_rate": counts[RunStatus.SUCCESS]
            / (counts[RunStatus.SUCCESS] + counts[RunStatus.FAILED]),
        }
        for name, counts in totals.items()
        if counts[RunStatus.FAILED]
    ]
    failing.sort(key=lambda item: (-item["failed"], item["pipeline"]))
    return failing[:limit]


def queue_depth(*, now: datetime | None = None) -> dict[str, int]:
    """{"pending": due now, "delayed": waiting for their not_before, "running": n}; counted on
    the (status, queued_at) index, so the cost follows the queue, not the history."""
    now = now or timezone.now()
    return {
        "pending": PipelineRun.objects.due(now).count(),
        "delayed": PipelineRun.objects.filter(status=RunStatus.PENDING, not_before__gt=now).count(),
        "running": PipelineRun.objects.filter(status=RunStatus.RUNNING).count(),
    }
