"""Upgrading an installation with run history: the migration stores every finished run's
duration (in batches) and fills the run statistics from the history, on both databases."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("runs_app", "0002_run_stats"), ("pipelines_app", "0002_discovery_warnings")]
BACKFILL = importlib.import_module("runs_app.migrations.0004_backfill_duration_stats")


def migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_upgrading_stores_durations_and_fills_statistics_from_the_history(monkeypatch):
    monkeypatch.setattr(BACKFILL, "BATCH", 2)  # several batches from five runs
    old = migrate(BEFORE)
    Pipeline = old.get_model("pipelines_app", "Pipeline")
    OldRun = old.get_model("runs_app", "PipelineRun")
    etl = Pipeline.objects.create(pipeline_name="etl")
    start = datetime(2026, 3, 4, 10, 15, tzinfo=UTC)

    def run(status: str, seconds: float | None, **fields):
        finished = start + timedelta(seconds=seconds) if seconds is not None else None
        return OldRun.objects.create(
            pipeline=etl,
            status=status,
            started_at=start if seconds is not None else None,
            finished_at=fields.pop("finished_at", finished),
            **fields,
        ).id

    ids = {
        "quick": run("SUCCESS", 4.5),
        "slow": run("SUCCESS", 90),
        "failed": run("FAILED", 30.25),
        "pending": run("PENDING", None),
        "never started": run("CANCELLED", None, finished_at=start),
    }
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(latest)
    new = MigrationExecutor(connection).loader.project_state(latest).apps
    Run = new.get_model("runs_app", "PipelineRun")
    RunPeriodStats = new.get_model("runs_app", "RunPeriodStats")

    durations = {name: Run.objects.get(id=pk).duration for name, pk in ids.items()}
    assert durations["quick"] == pytest.approx(4.5, abs=1e-3)
    assert durations["slow"] == pytest.approx(90, abs=1e-3)
    assert durations["failed"] == pytest.approx(30.25, abs=1e-3)
    assert durations["pending"] is None and durations["never started"] is None

    hour = RunPeriodStats.objects.get(granularity="hour", status="SUCCESS")
    day = RunPeriodStats.objects.get(granularity="day", status="SUCCESS")
    assert hour.period_start == datetime(2026, 3, 4, 10, tzinfo=UTC)
    assert day.period_start == datetime(2026, 3, 4, tzinfo=UTC)
    for row in (hour, day):
        assert (row.runs, row.le_5s, row.le_2m) == (2, 1, 1)
        assert row.duration_sum == pytest.approx(94.5, abs=1e-2)
    failed = RunPeriodStats.objects.get(granularity="hour", status="FAILED")
    assert (failed.runs, failed.le_1m) == (1, 1)
    cancelled = RunPeriodStats.objects.get(granularity="day", status="CANCELLED")
    assert (cancelled.runs, cancelled.duration_sum) == (1, 0)
    assert not RunPeriodStats.objects.filter(status="PENDING").exists()
