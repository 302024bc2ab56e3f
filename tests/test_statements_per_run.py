"""What a run costs the database: the statements of its claim and of its finish, and the
engine's loop claiming a burst without asking "any run due?" before every claim. PostgreSQL
pays a round trip per statement (SQLite a library call), so these are its throughput; the
lists below are the budget, a new statement on the path shows up here."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fastflow_site.db import counters_add
from runs_app.engine.local_executor import LocalExecutor
from runs_app.engine.loop import Engine
from runs_app.models import PipelineRun, RunPeriodStats, RunStat, RunStatus, StatsGranularity
from runs_app.outcome import Outcome
from runs_app.period_stats import period_start
from runs_app.services import run_claim, run_enqueue, run_finish
from tests.helpers_engine import make_pipeline, wait_for


def statements(captured: CaptureQueriesContext) -> list[str]:
    """Each statement as "VERB table"; transaction bookkeeping (SQLite's BEGIN IMMEDIATE, the
    savepoints of atomic blocks inside the test's own transaction) left out."""
    shapes = []
    for query in captured.captured_queries:
        sql = query["sql"]
        if re.match(r"(BEGIN|COMMIT|SAVEPOINT|RELEASE SAVEPOINT|ROLLBACK TO SAVEPOINT)\b", sql):
            continue
        verb = sql.split(None, 1)[0].upper()
        table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql)
        if "pg_advisory_xact_lock" in sql:
            shapes.append("LOCK")
        else:
            shapes.append(f"{verb} {table.group(1) if table else '?'}")
    return shapes


LOCK = ["LOCK"] if connection.vendor == "postgresql" else []  # SQLite: BEGIN IMMEDIATE


@pytest.mark.django_db
def test_a_claim_reads_the_running_runs_with_their_limits_in_one_query():
    pipeline = make_pipeline("busy", pipeline_json={"max_instances": 5})
    run_enqueue(pipeline=pipeline, triggered_by="manual")
    assert len(run_claim(engine_id="e", limit=1)) == 1  # one RUNNING: its limit is read
    run_enqueue(pipeline=pipeline, triggered_by="manual")

    with CaptureQueriesContext(connection) as captured:
        claimed = run_claim(engine_id="e", limit=1)

    assert len(claimed) == 1
    assert statements(captured) == [
        *LOCK,
        "SELECT pipeline_runs",  # RUNNING per pipeline, with the pipeline's configuration
        "SELECT pipeline_runs",  # the due candidates, with their pipelines
        "UPDATE pipeline_runs",  # PENDING → RUNNING, conditional
    ]


@pytest.mark.django_db
def test_a_claim_still_holds_a_pipeline_at_its_max_instances():
    pipeline = make_pipeline("single", pipeline_json={"max_instances": 1})
    first = run_enqueue(pipeline=pipeline, triggered_by="manual")
    second = run_enqueue(pipeline=pipeline, triggered_by="manual")
    other = run_enqueue(pipeline=make_pipeline("other"), triggered_by="manual")

    assert [r.id for r in run_claim(engine_id="e", limit=1)] == [first.id]
    # The limit comes from the running runs' query now: the full pipeline is skipped.
    assert [r.id for r in run_claim(engine_id="e", limit=5)] == [other.id]
    assert PipelineRun.objects.get(id=second.id).status == RunStatus.PENDING


@pytest.mark.django_db
def test_finishing_a_run_writes_each_counter_table_in_one_statement():
    pipeline = make_pipeline("counted")
    run_enqueue(pipeline=pipeline, triggered_by="manual")
    [run] = run_claim(engine_id="e", limit=1)

    with CaptureQueriesContext(connection) as captured:
        finished = run_finish(run=run, outcome=Outcome(exit_code=0, setup_duration=0.2))

    assert finished.status == RunStatus.SUCCESS
    assert statements(captured) == [
        "UPDATE pipeline_runs",  # RUNNING → SUCCESS, with its duration
        "SELECT pipeline_runs",  # what it became (a cancel request wins)
        "INSERT run_period_stats",  # its hour and its day, upserted together
        "UPDATE pipelines",  # the pipeline's counters
        "INSERT run_stats",  # runs + duration + setup histograms, upserted together
        "SELECT pipelines",  # read once for retries, downstream runs and notifications
        "SELECT notification_events",  # was the last outcome a failure (a recovery)?
        "SELECT notification_channels",  # who hears of a success
    ]
    assert finished.duration == pytest.approx(
        (finished.finished_at - finished.started_at).total_seconds()
    )
    assert PipelineRun.objects.get(id=run.id).duration == finished.duration
    series = {
        (s.family, s.le): (s.count, s.total) for s in RunStat.objects.filter(pipeline=pipeline)
    }
    assert set(series) == {("runs", ""), ("run_duration", "1.0"), ("setup_duration", "0.25")}
    assert series[("setup_duration", "0.25")] == (1, pytest.approx(0.2))


@pytest.mark.django_db
def test_counters_add_adds_to_existing_rows_and_inserts_missing_ones_in_one_statement():
    pipeline = make_pipeline("mixed")
    now = timezone.now()
    hour = period_start(now, StatsGranularity.HOUR)
    day = period_start(now, StatsGranularity.DAY)
    RunPeriodStats.objects.create(
        granularity=StatsGranularity.HOUR,
        period_start=hour,
        pipeline=pipeline,
        status=RunStatus.SUCCESS,
        runs=4,
        duration_sum=10.0,
        le_1s=4,
    )
    key = {"pipeline_id": pipeline.pipeline_name, "status": RunStatus.SUCCESS}
    buckets = dict.fromkeys(
        [f.name for f in RunPeriodStats._meta.fields if f.name.startswith(("le_", "gt_"))], 0
    )
    rows = [
        {"granularity": g, "period_start": p, **key, **buckets, "le_5s": 1, "runs": 1}
        | {"duration_sum": 2.5}
        for g, p in ((StatsGranularity.HOUR, hour), (StatsGranularity.DAY, day))
    ]

    with CaptureQueriesContext(connection) as captured:
        counters_add(
            RunPeriodStats,
            rows=rows,
            key=("granularity", "period_start", "pipeline", "status"),
            add=("runs", "duration_sum", *buckets),
        )

    assert statements(captured) == ["INSERT run_period_stats"]
    by_granularity = {r.granularity: r for r in RunPeriodStats.objects.filter(pipeline=pipeline)}
    hourly, daily = by_granularity[StatsGranularity.HOUR], by_granularity[StatsGranularity.DAY]
    assert (hourly.runs, hourly.duration_sum, hourly.le_1s, hourly.le_5s) == (5, 12.5, 4, 1)
    assert (daily.runs, daily.duration_sum, daily.le_1s, daily.le_5s) == (1, 2.5, 0, 1)
    assert daily.period_start == day and day == hour - timedelta(hours=hour.hour)


@pytest.mark.django_db(transaction=True)
def test_in_a_burst_the_engine_claims_without_asking_whether_a_run_is_due_first():
    pipeline = make_pipeline("burst")
    runs = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(3)]
    engine = Engine(executor=LocalExecutor(), schedules=False, slots=2)
    engine._cancel_due = engine._recycle_due = float("inf")  # only the claim's statements
    try:
        with CaptureQueriesContext(connection) as first:
            engine.step()
        # Asked first (nothing told it a burst was coming), then claimed both slots' worth.
        assert statements(first) == [
            "SELECT pipeline_runs",  # any run due?
            *LOCK,
            "SELECT pipeline_runs",
            "SELECT pipeline_runs",
            "UPDATE pipeline_runs",
            "UPDATE pipeline_runs",
        ]
        assert len(engine.dispatcher.active_run_ids()) == 2
        wait_for(lambda: engine.dispatcher.free_slots == 2, what="the two runs to end")

        with CaptureQueriesContext(connection) as second:
            engine.step()
        # It got all it asked for: the next claim went ahead without the "any run due?" query.
        assert statements(second) == [
            *LOCK,
            "SELECT pipeline_runs",
            "SELECT pipeline_runs",
            "UPDATE pipeline_runs",
        ]
        wait_for(lambda: engine.dispatcher.free_slots == 2, what="the third run to end")

        with CaptureQueriesContext(connection) as third:
            engine.step()  # 1 of 2 asked for: no backlog assumed
        assert statements(third) == ["SELECT pipeline_runs"]  # "any run due?": no
    finally:
        engine.dispatcher.stop(timeout=30)
    assert {r.status for r in PipelineRun.objects.filter(id__in=[r.id for r in runs])} == {
        RunStatus.SUCCESS
    }
