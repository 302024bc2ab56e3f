"""After a run ends: automatic retries (not before their delay) and downstream triggers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pipelines_app.services import pipeline_set_enabled
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_cancel, run_claim_next, run_enqueue, run_fail
from tests.helpers_engine import (
    ThreadEngine,
    claim_now,
    claimed_run,
    finish_claimed,
    log_text,
    make_pipeline,
    wait_for,
    wait_until_finished,
)

FIXED_1S = {"type": "fixed_delay", "delay": 1}


def retrying(name: str, attempts: int = 2, strategy: dict | None = None, **extra: object):
    return make_pipeline(
        name,
        pipeline_json={
            "retry_attempts": attempts,
            "retry_strategy": strategy or FIXED_1S,
            **extra,
        },
    )


@pytest.mark.django_db
def test_a_failed_run_is_retried_after_its_delay():
    pipeline = retrying("flaky")
    run = claimed_run(pipeline, parameters={"X": "1"})
    before = timezone.now()

    finish_claimed(run, 1)

    retry = PipelineRun.objects.get(parent_run=run)
    assert retry.status == RunStatus.PENDING
    assert retry.triggered_by == "retry"
    assert retry.retry_attempt == 1
    assert retry.parameters == {"X": "1"}
    assert (
        before + timedelta(seconds=1) <= retry.not_before <= timezone.now() + timedelta(seconds=1)
    )
    assert run_claim_next(engine_id="e") is None  # not before its delay


@pytest.mark.django_db
def test_exponential_backoff_grows_per_attempt():
    pipeline = retrying(
        "backoff",
        attempts=3,
        strategy={"type": "exponential_backoff", "initial_delay": 10, "multiplier": 3},
    )
    run = claimed_run(pipeline)
    delays = []
    for _ in range(3):
        finished_at = timezone.now()
        finish_claimed(run, 1)
        run = PipelineRun.objects.get(parent_run=run)
        delays.append(round((run.not_before - finished_at).total_seconds()))
        run = claim_now(run)

    assert delays == [10, 30, 90]


@pytest.mark.django_db
def test_retries_stop_after_the_last_attempt_and_then_on_failure_fires():
    make_pipeline("alert")
    pipeline = retrying(
        "flaky",
        attempts=1,
        downstream_triggers=[{"pipeline": "alert", "on_success": False, "on_failure": True}],
    )
    run = claimed_run(pipeline)

    finish_claimed(run, 1)
    assert not PipelineRun.objects.filter(pipeline_id="alert").exists()  # a retry is pending

    retry = claim_now(PipelineRun.objects.get(parent_run=run))
    finish_claimed(retry, 1)

    assert not PipelineRun.objects.filter(pipeline_id="flaky", parent_run=retry).exists()
    alert = PipelineRun.objects.get(pipeline_id="alert")
    assert alert.triggered_by == "downstream"
    assert alert.parent_run_id == retry.id
    assert alert.chain_depth == 1


@pytest.mark.django_db
def test_a_run_config_overrides_the_retry_settings():
    pipeline = make_pipeline(
        "configured",
        pipeline_json={
            "retry_attempts": 0,
            "schedules": [
                {
                    "id": "nightly",
                    "schedule_cron": "0 3 * * *",
                    "retry_attempts": 1,
                    "retry_strategy": FIXED_1S,
                }
            ],
        },
    )

    finish_claimed(claimed_run(pipeline), 1)
    finish_claimed(claimed_run(pipeline, run_config_id="nightly"), 1)

    retries = PipelineRun.objects.filter(triggered_by="retry")
    assert [r.run_config_id for r in retries] == ["nightly"]


@pytest.mark.django_db
def test_downstream_runs_on_success_with_its_run_config():
    make_pipeline(
        "load", pipeline_json={"schedules": [{"id": "full", "schedule_cron": "0 1 * * *"}]}
    )
    make_pipeline("report")
    pipeline = make_pipeline(
        "extract",
        pipeline_json={
            "downstream_triggers": [
                {"pipeline": "load", "run_config_id": "full"},
                {"pipeline": "report", "on_success": False, "on_failure": True},
            ]
        },
    )

    run = finish_claimed(claimed_run(pipeline), 0)

    child = PipelineRun.objects.get(pipeline_id="load")
    assert (child.triggered_by, child.run_config_id, child.chain_depth) == ("downstream", "full", 1)
    assert child.parent_run_id == run.id
    assert not PipelineRun.objects.filter(pipeline_id="report").exists()


@pytest.mark.django_db
def test_the_chain_depth_is_capped(settings, tmp_path):
    settings.FASTFLOW_DOWNSTREAM_MAX_DEPTH = 3
    pipeline = make_pipeline("loop", pipeline_json={"downstream_triggers": [{"pipeline": "loop"}]})
    run = claimed_run(pipeline)
    log = tmp_path / "loop.log"
    PipelineRun.objects.filter(id=run.id).update(log_file=str(log))
    run.log_file = str(log)

    depths = []
    while run is not None:
        finish_claimed(run, 0)
        depths.append(run.chain_depth)
        child = PipelineRun.objects.filter(parent_run=run).first()
        run = claim_now(child) if child else None

    assert depths == [0, 1, 2, 3]
    last = PipelineRun.objects.get(chain_depth=3)
    assert not PipelineRun.objects.filter(parent_run=last).exists()
    assert last.status == RunStatus.SUCCESS


@pytest.mark.django_db
def test_unknown_targets_and_the_depth_cap_are_logged_in_the_upstream_run(settings, tmp_path):
    settings.FASTFLOW_DOWNSTREAM_MAX_DEPTH = 1
    pipeline_set_enabled(pipeline=make_pipeline("off"), enabled=False)
    pipeline = make_pipeline(
        "upstream",
        pipeline_json={
            "downstream_triggers": [
                {"pipeline": "does_not_exist"},
                {"pipeline": "off"},
                {"pipeline": "upstream"},
            ]
        },
    )

    def finish_with_log(run: PipelineRun, name: str) -> str:
        log = tmp_path / name
        PipelineRun.objects.filter(id=run.id).update(log_file=str(log))
        run.log_file = str(log)
        assert finish_claimed(run, 0).status == RunStatus.SUCCESS
        return log.read_text()

    text = finish_with_log(claimed_run(pipeline), "first.log")

    assert "downstream pipeline 'does_not_exist' not triggered" in text
    assert "'does_not_exist' does not exist" in text
    assert "downstream pipeline 'off' not triggered" in text and "disabled" in text
    child = PipelineRun.objects.get(pipeline_id="upstream", chain_depth=1)
    assert f"triggered downstream pipeline 'upstream': run {child.id}" in text

    text = finish_with_log(claim_now(child), "second.log")

    assert "'upstream' not triggered: the chain is already 1 runs deep" in text
    assert "FASTFLOW_DOWNSTREAM_MAX_DEPTH=1" in text
    assert PipelineRun.objects.count() == 2


@pytest.mark.django_db
def test_cancelled_runs_neither_retry_nor_trigger():
    make_pipeline("next")
    pipeline = retrying(
        "stoppable",
        downstream_triggers=[{"pipeline": "next", "on_success": True, "on_failure": True}],
    )
    run = claimed_run(pipeline)
    run_cancel(run=run)

    run = finish_claimed(run, 143, cancelled=True)

    assert run.status == RunStatus.CANCELLED
    assert PipelineRun.objects.count() == 1


@pytest.mark.django_db
def test_an_infrastructure_failure_is_retried_too():
    pipeline = retrying("infra", attempts=1)
    run = claimed_run(pipeline)

    run_fail(run=run, reason="Docker engine unreachable")

    assert PipelineRun.objects.filter(parent_run=run, triggered_by="retry").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_engine_runs_the_retry_no_earlier_than_its_delay():
    marker = "attempt"
    pipeline = make_pipeline(
        "fails_twice",
        "import os, sys\nprint('attempt', os.environ['FASTFLOW_RUN_ID'])\nsys.exit(1)\n",
        pipeline_json={"retry_attempts": 1, "retry_strategy": FIXED_1S},
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(run)
        retry = wait_for(lambda: PipelineRun.objects.filter(parent_run=run).first())
        wait_until_finished(retry)

    assert (run.status, retry.status) == (RunStatus.FAILED, RunStatus.FAILED)
    assert retry.started_at >= retry.not_before >= run.finished_at + timedelta(seconds=1)
    assert marker in log_text(retry)
    assert "retry 1 of 1 queued" in log_text(run)
    assert "no retry left" in log_text(retry)
    assert PipelineRun.objects.count() == 2
