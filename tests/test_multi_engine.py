"""Several real `runscheduler` processes on one database: every run executes exactly once and
every schedule tick makes exactly one run, including across a leader hand-over."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from runs_app.engine.lease import SCHEDULER_LEASE
from runs_app.models import TERMINAL_STATUSES, EngineInstance, PipelineRun, RunStatus
from runs_app.schedule_services import scheduledjob_create, scheduledjob_update
from runs_app.services import run_enqueue
from tests.helpers_engine import EngineProcess, lease_holder, make_pipeline, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TRIVIAL = "import os\nprint('ran', os.environ['FASTFLOW_RUN_ID'])\n"


def tick_of(run: PipelineRun) -> datetime:
    return datetime.fromisoformat(run.idempotency_key.split(":", 2)[2])


def test_two_engines_run_each_of_100_queued_runs_exactly_once():
    pipeline = make_pipeline("trivial", TRIVIAL)

    # Each engine drives at most 4 runs of the 8 allowed in total, so both take part.
    def engine(name: str) -> EngineProcess:
        return EngineProcess(name, args=("--slots", "4"), FASTFLOW_MAX_CONCURRENT_RUNS="8")

    with engine("a") as a, engine("b") as b:
        engines = {a.wait_registered(), b.wait_registered()}
        runs = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(100)]
        wait_for(
            lambda: PipelineRun.objects.filter(status__in=TERMINAL_STATUSES).count() == 100,
            timeout=400,
            interval=0.5,
            what="100 runs to finish",
        )
        a.assert_alive()
        b.assert_alive()

    finished = PipelineRun.objects.filter(id__in=[r.id for r in runs])
    assert set(finished.values_list("status", flat=True)) == {RunStatus.SUCCESS}
    used = set(finished.values_list("engine_id", flat=True))
    assert used <= engines
    assert len(used) == 2, "both engines should have taken part"
    logs = sorted((Path(settings.LOGS_DIR) / "trivial").glob("*/*.log"))  # <shard>/<run>.log
    assert len(logs) == 100
    for run in finished:
        lines = [line for line in Path(run.log_file).read_text().splitlines() if " ran " in line]
        assert lines == [lines[0]] and lines[0].endswith(f"ran {run.id}")  # once, its own run
    assert not EngineInstance.objects.exists()  # both unregistered on SIGTERM
    for engine in (a, b):
        assert "Traceback" not in engine.read_output(), engine.read_output()


def test_two_engines_fire_each_tick_of_a_schedule_once():
    pipeline = make_pipeline("ticker", TRIVIAL)
    with EngineProcess("a") as a, EngineProcess("b") as b:
        a.wait_registered()
        b.wait_registered()
        wait_for(lambda: lease_holder(name=SCHEDULER_LEASE), what="a leader")
        job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="1")
        wait_for(lambda: PipelineRun.objects.count() >= 6, timeout=30, what="six ticks")
        scheduledjob_update(job=job, enabled=False)
        wait_for(
            lambda: not PipelineRun.objects.exclude(status__in=TERMINAL_STATUSES).exists(),
            timeout=30,
            what="the runs to finish",
        )

    runs = list(PipelineRun.objects.all())
    ticks = sorted(tick_of(run) for run in runs)
    assert len(set(ticks)) == len(runs)
    assert all(b - a == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:], strict=False))
    assert {run.triggered_by for run in runs} == {"scheduler"}
    assert {run.status for run in runs} == {RunStatus.SUCCESS}
    for engine in (a, b):
        assert "Traceback" not in engine.read_output(), engine.read_output()


def test_a_new_leader_takes_over_without_duplicating_ticks():
    pipeline = make_pipeline("ticker", TRIVIAL)
    first, second = EngineProcess("first"), EngineProcess("second")
    with first:
        first_id = first.wait_registered()
        wait_for(lambda: lease_holder(name=SCHEDULER_LEASE) == first_id, what="first to lead")
        with second:
            second_id = second.wait_registered()
            job = scheduledjob_create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="1")
            wait_for(lambda: PipelineRun.objects.count() >= 3, timeout=30, what="ticks")

            first.terminate()  # releases the lease at once
            wait_for(
                lambda: lease_holder(name=SCHEDULER_LEASE) == second_id,
                timeout=30,
                what="the second engine to lead",
            )
            handed_over = PipelineRun.objects.count()
            wait_for(
                lambda: PipelineRun.objects.count() >= handed_over + 3,
                timeout=30,
                what="ticks from the new leader",
            )
            scheduledjob_update(job=job, enabled=False)
            wait_for(
                lambda: not PipelineRun.objects.exclude(status__in=TERMINAL_STATUSES).exists(),
                timeout=30,
                what="the runs to finish",
            )

    keys = list(PipelineRun.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))
    # A local run cannot outlive its engine: a tick the first engine was still running when it
    # was stopped fails with that reason. Every other run succeeded.
    for run in PipelineRun.objects.exclude(status=RunStatus.SUCCESS):
        assert run.status == RunStatus.FAILED, run
        assert run.engine_id == first_id, run
        assert "stopped while the run was in progress" in run.error_message, run.error_message
    assert PipelineRun.objects.filter(status=RunStatus.SUCCESS).count() >= 5
    for engine in (first, second):
        assert "Traceback" not in engine.read_output(), engine.read_output()
