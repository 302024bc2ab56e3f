"""Run statistics are maintained when runs end (not computed from the history), and the readers
answer the dashboard's questions from them: runs per period by status, success rate, p50/p95,
failing pipelines, queue depth."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from runs_app.models import PipelineRun, RunPeriodStats, RunStatus, StatsGranularity
from runs_app.outcome import Outcome
from runs_app.period_stats import (
    failing_pipelines,
    granularity_for,
    histogram_quantile,
    period_start,
    period_stats_prune,
    period_summary,
    queue_depth,
    runs_per_period,
)
from runs_app.services import run_cancel, run_delete, run_fail, run_finish
from tests.helpers_api import make_pipeline, make_run

pytestmark = pytest.mark.django_db


def finished_run(pipeline, *, seconds: float, exit_code: int = 0) -> PipelineRun:
    run = make_run(
        pipeline, RunStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=seconds)
    )
    return run_finish(run=run, outcome=Outcome(exit_code=exit_code))


def rows(**filters) -> list[RunPeriodStats]:
    return list(RunPeriodStats.objects.filter(**filters).order_by("granularity"))


def test_a_finished_run_is_counted_in_its_hour_and_its_day_with_its_duration():
    run = finished_run(make_pipeline("etl"), seconds=45)

    counted = rows(pipeline_id="etl", status=RunStatus.SUCCESS)
    ended = run.finished_at.astimezone(UTC)

    assert run.duration == pytest.approx(45, abs=1)
    assert [r.granularity for r in counted] == [StatsGranularity.DAY, StatsGranularity.HOUR]
    day, hour = counted
    assert hour.period_start == ended.replace(minute=0, second=0, microsecond=0)
    assert day.period_start == ended.replace(hour=0, minute=0, second=0, microsecond=0)
    for row in counted:
        assert row.runs == 1 and row.le_1m == 1 and row.le_30s == 0
        assert row.duration_sum == pytest.approx(run.duration)


def test_runs_of_one_period_add_up_in_one_row():
    etl = make_pipeline("etl")
    for seconds in (3, 4, 200):
        finished_run(etl, seconds=seconds)
    finished_run(etl, seconds=8, exit_code=1)

    (success_hour,) = rows(status=RunStatus.SUCCESS, granularity=StatsGranularity.HOUR)
    (failed_hour,) = rows(status=RunStatus.FAILED, granularity=StatsGranularity.HOUR)

    assert (success_hour.runs, success_hour.le_5s, success_hour.le_5m) == (3, 2, 1)
    assert (failed_hour.runs, failed_hour.le_10s) == (1, 1)


def test_a_run_that_never_started_counts_without_a_duration():
    etl = make_pipeline("etl")
    cancelled = run_cancel(run=make_run(etl))
    failed = run_fail(run=make_run(etl), reason="pipeline disabled")

    assert cancelled.duration is None and failed.duration is None
    for status in (RunStatus.CANCELLED, RunStatus.FAILED):
        for row in rows(status=status):
            assert row.runs == 1 and row.duration_sum == 0
            assert sum(getattr(row, c) for c in ("le_1s", "le_1m", "le_1h", "gt_1d")) == 0


def test_deleting_runs_leaves_their_statistics():
    run = finished_run(make_pipeline("etl"), seconds=5)

    run_delete(run=run)

    assert not PipelineRun.objects.exists()
    assert period_summary(since=timezone.now() - timedelta(hours=1)).runs == 1


def test_the_summary_has_totals_success_rate_and_percentiles():
    etl = make_pipeline("etl")
    for seconds in (2, 3, 4, 4, 40, 50, 70, 80, 90, 500):
        finished_run(etl, seconds=seconds)
    finished_run(etl, seconds=6, exit_code=1)
    run_cancel(run=make_run(etl))

    summary = period_summary(since=timezone.now() - timedelta(hours=1))

    assert (summary.runs, summary.succeeded, summary.failed, summary.cancelled) == (12, 10, 1, 1)
    assert summary.success_rate == pytest.approx(10 / 11)
    # 11 timed runs: the median (rank 5.5) is in the 30–60 s bucket, p95 in 5–10 min.
    assert 30 <= summary.duration_p50 <= 60
    assert 300 <= summary.duration_p95 <= 600
    assert summary.duration_mean == pytest.approx(
        (2 + 3 + 4 + 4 + 40 + 50 + 70 + 80 + 90 + 500 + 6) / 11, rel=0.05
    )


def test_a_quantile_is_interpolated_within_its_bucket():
    assert histogram_quantile({"le_1m": 4}, 0.5) == pytest.approx(45)  # 30–60 s, halfway
    assert histogram_quantile({"le_1s": 1, "le_5s": 1}, 0.95) == pytest.approx(4.6)  # 1 + 4 × 0.9
    assert histogram_quantile({"gt_1d": 2}, 0.5) == 86400  # open-ended: "at least a day"
    assert histogram_quantile({}, 0.5) is None


def test_failing_pipelines_come_most_failures_first():
    etl, web, ok = make_pipeline("etl"), make_pipeline("web"), make_pipeline("ok")
    for _ in range(2):
        finished_run(etl, seconds=1, exit_code=1)
    finished_run(etl, seconds=1)
    finished_run(web, seconds=1, exit_code=1)
    finished_run(ok, seconds=1)

    failing = failing_pipelines(since=timezone.now() - timedelta(hours=1))

    assert [(f["pipeline"], f["failed"], f["runs"]) for f in failing] == [
        ("etl", 2, 3),
        ("web", 1, 1),
    ]
    assert failing[0]["success_rate"] == pytest.approx(1 / 3)


def test_runs_per_period_by_status_per_hour_and_per_day():
    etl = make_pipeline("etl")
    finished_run(etl, seconds=1)
    finished_run(etl, seconds=1, exit_code=1)
    since = timezone.now() - timedelta(days=3)

    (hour,) = runs_per_period(since=timezone.now() - timedelta(hours=1))
    (day,) = runs_per_period(since=since, period="day")

    for period in (hour, day):
        assert (period["SUCCESS"], period["FAILED"], period["CANCELLED"], period["total"]) == (
            1,
            1,
            0,
            2,
        )
    assert day["start"].hour == 0
    with pytest.raises(ValueError, match="period"):
        runs_per_period(since=since, period="week")


def test_windows_longer_than_two_days_read_the_daily_rows():
    now = timezone.now()

    assert granularity_for(now - timedelta(hours=47), now) == StatsGranularity.HOUR
    assert granularity_for(now - timedelta(days=7), now) == StatsGranularity.DAY


def test_the_queue_depth_counts_due_delayed_and_running_runs():
    etl = make_pipeline("etl")
    make_run(etl)
    make_run(etl, not_before=timezone.now() - timedelta(seconds=1))
    make_run(etl, not_before=timezone.now() + timedelta(hours=1))
    make_run(etl, RunStatus.RUNNING, started_at=timezone.now())
    make_run(etl, RunStatus.SUCCESS)

    assert queue_depth() == {"pending": 2, "delayed": 1, "running": 1}


def test_hourly_rows_older_than_two_weeks_are_pruned_and_the_days_stay():
    etl = make_pipeline("etl")
    now = timezone.now()
    for age in (timedelta(days=20), timedelta(days=13)):
        for granularity in StatsGranularity.values:
            RunPeriodStats.objects.create(
                granularity=granularity,
                period_start=period_start(now - age, granularity),
                pipeline=etl,
                status=RunStatus.SUCCESS,
                runs=1,
            )

    assert period_stats_prune(now=now) == 1
    left = RunPeriodStats.objects.values_list("granularity", flat=True)
    assert sorted(left) == ["day", "day", "hour"]
