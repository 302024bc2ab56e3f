"""The run lifecycle services: enqueue, cancel, retry, claim, finish, fail."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from pipelines_app.models import Pipeline
from pipelines_app.services import pipeline_set_enabled
from runs_app.errors import (
    InvalidRunRequest,
    PipelineNotFound,
    PipelineNotRunnable,
    RunStateConflict,
)
from runs_app.models import PipelineRun, RunStatus
from runs_app.outcome import Outcome
from runs_app.services import (
    run_cancel,
    run_claim_next,
    run_delete,
    run_enqueue,
    run_fail,
    run_finish,
    run_parameters_validate,
    run_record_start,
    run_retry,
)
from tests.helpers_engine import claimed_run, finish_claimed, make_pipeline
from tests.helpers_executor import text_lines

pytestmark = pytest.mark.django_db


@pytest.fixture
def pipeline() -> Pipeline:
    return make_pipeline(
        "hello", pipeline_json={"schedules": [{"id": "nightly", "schedule_cron": "0 3 * * *"}]}
    )


def test_it_enqueues_a_pending_run(pipeline):
    run = run_enqueue(pipeline=pipeline, triggered_by="manual", parameters={"DAY": "mon"})

    assert run.status == RunStatus.PENDING
    assert run.pipeline_id == "hello"
    assert run.parameters == {"DAY": "mon"}
    assert run.triggered_by == "manual"
    assert run.started_at is None


def test_it_accepts_a_pipeline_name(pipeline):
    run = run_enqueue(pipeline="hello", triggered_by="webhook", run_config_id="nightly")

    assert run.pipeline_id == "hello"
    assert run.run_config_id == "nightly"


def test_it_refuses_an_unknown_pipeline(pipeline):
    with pytest.raises(PipelineNotFound, match="'nope' does not exist"):
        run_enqueue(pipeline="nope", triggered_by="manual")
    assert not PipelineRun.objects.exists()


def test_it_refuses_a_disabled_pipeline_even_from_a_stale_instance(pipeline):
    pipeline_set_enabled(pipeline=pipeline, enabled=False)

    with pytest.raises(PipelineNotRunnable, match="disabled"):
        run_enqueue(pipeline=pipeline, triggered_by="manual")  # instance still says enabled


def test_it_refuses_a_broken_pipeline(pipeline, pipelines_dir):
    (pipelines_dir / "hello" / "pipeline.json").write_text("{not json")
    from pipelines_app.services import pipelines_sync

    pipelines_sync()

    with pytest.raises(PipelineNotRunnable, match="configuration error"):
        run_enqueue(pipeline="hello", triggered_by="manual")


def test_it_refuses_a_missing_pipeline(pipeline, pipelines_dir):
    import shutil

    from pipelines_app.services import pipelines_sync

    shutil.rmtree(pipelines_dir / "hello")
    pipelines_sync()

    with pytest.raises(PipelineNotRunnable, match="missing"):
        run_enqueue(pipeline="hello", triggered_by="manual")


def test_it_refuses_an_unknown_run_configuration(pipeline):
    with pytest.raises(InvalidRunRequest) as caught:
        run_enqueue(pipeline=pipeline, triggered_by="manual", run_config_id="weekly")

    assert "weekly" in caught.value.fields["run_config_id"]
    assert "nightly" in caught.value.fields["run_config_id"]  # says what exists


def test_it_refuses_an_unknown_trigger(pipeline):
    with pytest.raises(InvalidRunRequest, match="unknown trigger"):
        run_enqueue(pipeline=pipeline, triggered_by="cron")


@pytest.mark.parametrize(
    ("parameters", "field", "message"),
    [
        ({"1ABC": "x"}, "parameters.1ABC", "invalid parameter name"),
        ({"WITH-DASH": "x"}, "parameters.WITH-DASH", "invalid parameter name"),
        ({"COUNT": 3}, "parameters.COUNT", "must be a string"),
        ({"BIG": "x" * 20000}, "parameters.BIG", "longer than"),
        ({"NUL": "a\x00b"}, "parameters.NUL", "NUL character"),
        ({"HALF": "a\ud800b"}, "parameters.HALF", "not valid Unicode"),
    ],
)
def test_it_rejects_bad_parameters_naming_the_key(pipeline, parameters, field, message):
    with pytest.raises(InvalidRunRequest) as caught:
        run_enqueue(pipeline=pipeline, triggered_by="manual", parameters=parameters)

    assert message in caught.value.fields[field]
    assert not PipelineRun.objects.exists()


def test_it_rejects_too_many_parameters(settings):
    settings.FASTFLOW_PARAMETERS_MAX_COUNT = 2

    with pytest.raises(InvalidRunRequest, match="too many parameters: 3 given, at most 2"):
        run_parameters_validate(parameters={"A": "1", "B": "2", "C": "3"})


def test_it_rejects_parameters_that_are_not_an_object():
    with pytest.raises(InvalidRunRequest) as caught:
        run_parameters_validate(parameters=["A=1"])

    assert "parameters" in caught.value.fields


def test_an_idempotency_key_returns_the_existing_run(pipeline):
    first = run_enqueue(pipeline=pipeline, triggered_by="scheduler", idempotency_key="tick-1")
    again = run_enqueue(pipeline=pipeline, triggered_by="scheduler", idempotency_key="tick-1")
    other = run_enqueue(pipeline=pipeline, triggered_by="scheduler", idempotency_key="tick-2")

    assert again.id == first.id
    assert other.id != first.id
    assert PipelineRun.objects.count() == 2


def test_an_idempotency_key_expires_after_a_day(pipeline):
    old = run_enqueue(pipeline=pipeline, triggered_by="manual", idempotency_key="k")
    PipelineRun.objects.filter(id=old.id).update(queued_at=timezone.now() - timedelta(hours=25))

    new = run_enqueue(pipeline=pipeline, triggered_by="manual", idempotency_key="k")

    assert new.id != old.id


def test_it_cancels_a_pending_run_at_once(pipeline):
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    run = run_cancel(run=run)

    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert run_claim_next(engine_id="e1") is None  # never dispatched


def test_cancelling_a_running_run_asks_the_engine(pipeline):
    run = claimed_run(pipeline)

    run = run_cancel(run=run)

    assert run.status == RunStatus.RUNNING
    assert run.cancel_requested_at is not None
    assert run_cancel(run=run).status == RunStatus.RUNNING  # asking twice is fine


def test_a_cancelled_running_run_finishes_cancelled_whatever_the_exit(pipeline):
    run = claimed_run(pipeline)
    run_cancel(run=run)

    run = run_finish(run=run, outcome=Outcome(exit_code=143, cancelled=True))

    assert run.status == RunStatus.CANCELLED
    assert run.error_message == "cancelled by request"
    assert run.exit_code == 143


def test_it_refuses_to_cancel_a_finished_run(pipeline):
    run = finish_claimed(claimed_run(pipeline), 0)

    with pytest.raises(RunStateConflict, match="already finished"):
        run_cancel(run=run)


def test_retry_makes_a_new_run_with_the_same_input(pipeline):
    run = claimed_run(pipeline, parameters={"X": "1"}, run_config_id="nightly")
    finish_claimed(run, 1)

    retry = run_retry(run=run)

    assert retry.status == RunStatus.PENDING
    assert retry.parameters == {"X": "1"}
    assert retry.run_config_id == "nightly"
    assert retry.parent_run_id == run.id
    assert retry.triggered_by == "manual"


def test_retry_is_refused_while_the_run_is_active(pipeline):
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with pytest.raises(RunStateConflict, match="only a finished run"):
        run_retry(run=run)


def test_claim_takes_the_oldest_due_run_and_marks_it_running(pipeline):
    first = run_enqueue(pipeline=pipeline, triggered_by="manual")
    run_enqueue(pipeline=pipeline, triggered_by="manual")

    claimed = run_claim_next(engine_id="host:1:ab")

    assert claimed.id == first.id
    assert claimed.status == RunStatus.RUNNING
    assert claimed.engine_id == "host:1:ab"
    assert claimed.started_at is not None


def test_claim_waits_for_not_before(pipeline):
    later = timezone.now() + timedelta(minutes=5)
    run_enqueue(pipeline=pipeline, triggered_by="retry", not_before=later)

    assert run_claim_next(engine_id="e1") is None

    PipelineRun.objects.update(not_before=timezone.now() - timedelta(seconds=1))
    assert run_claim_next(engine_id="e1") is not None


def test_record_start_stores_what_was_started(pipeline, tmp_path):
    run = claimed_run(pipeline)

    ok = run_record_start(
        run=run,
        container_id="abc123",
        env_vars={"TOKEN": "***"},
        log_file=tmp_path / "x.log",
        metrics_file=tmp_path / "x.jsonl",
    )

    run.refresh_from_db()
    assert ok
    assert (run.container_id, run.env_vars) == ("abc123", {"TOKEN": "***"})
    assert run.log_file == str(tmp_path / "x.log")


def test_record_start_reports_a_run_that_is_no_longer_ours(pipeline, tmp_path):
    run = claimed_run(pipeline)
    run_fail(run=PipelineRun.objects.get(id=run.id), reason="reconciled elsewhere")

    assert not run_record_start(
        run=run, container_id="c", env_vars={}, log_file="l", metrics_file="m"
    )


def test_finish_success_records_the_outcome_and_counts(pipeline):
    run = claimed_run(pipeline)

    run = run_finish(
        run=run,
        outcome=Outcome(exit_code=0, setup_duration=0.25, uv_version="0.13.9", peak_memory_bytes=9),
    )

    assert run.status == RunStatus.SUCCESS
    assert (run.exit_code, run.setup_duration, run.uv_version) == (0, 0.25, "0.13.9")
    assert run.peak_memory_bytes == 9
    assert run.finished_at is not None
    pipeline.refresh_from_db()
    assert (pipeline.total_runs, pipeline.successful_runs, pipeline.failed_runs) == (1, 1, 0)


def test_finish_failure_says_why(pipeline):
    run = finish_claimed(claimed_run(pipeline), 3)

    assert run.status == RunStatus.FAILED
    assert run.exit_code == 3
    assert run.error_message == "pipeline exited with code 3"
    pipeline.refresh_from_db()
    assert (pipeline.total_runs, pipeline.failed_runs) == (1, 1)


def test_finish_uses_the_executors_explanation(pipeline):
    run = finish_claimed(claimed_run(pipeline), -9, timed_out=True, error="timed out after 5 s")

    assert run.status == RunStatus.FAILED
    assert run.error_message == "timed out after 5 s"


def test_webhook_runs_are_counted(pipeline):
    finish_claimed(claimed_run(pipeline, triggered_by="webhook"), 0)

    pipeline.refresh_from_db()
    assert (pipeline.total_runs, pipeline.webhook_runs) == (1, 1)


def test_a_terminal_status_is_never_overwritten(pipeline):
    run = claimed_run(pipeline)
    run_fail(run=PipelineRun.objects.get(id=run.id), reason="engine died")

    late = run_finish(run=run, outcome=Outcome(exit_code=0))

    assert late.status == RunStatus.FAILED
    assert late.error_message == "engine died"
    pipeline.refresh_from_db()
    assert pipeline.total_runs == 1  # counted once


def test_fail_records_the_reason_in_the_run_and_its_log(pipeline, tmp_path):
    run = claimed_run(pipeline)
    log = tmp_path / "logs" / "run.log"

    run = run_fail(run=run, reason="image 'x' not found", log_file=log)

    assert run.status == RunStatus.FAILED
    assert run.error_message == "image 'x' not found"
    assert run.log_file == str(log)
    assert "[fastflow] run failed: image 'x' not found" in text_lines(Path(log))


def _run_with_files(pipeline: Pipeline, status: str) -> tuple[PipelineRun, Path, Path]:
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    log = Path(settings.LOGS_DIR) / pipeline.pipeline_name / f"{run.id}.log"
    metrics = Path(settings.METRICS_DIR) / f"{run.id}.jsonl"
    for path in (log, metrics):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    PipelineRun.objects.filter(id=run.id).update(
        status=status, log_file=str(log), metrics_file=str(metrics)
    )
    return run, log, metrics


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED])
def test_delete_removes_a_finished_run_and_its_files(pipeline, status):
    run, log, metrics = _run_with_files(pipeline, status)

    run_delete(run=run)

    assert not PipelineRun.objects.filter(id=run.id).exists()
    assert not log.exists() and not metrics.exists()


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.RUNNING])
def test_delete_refuses_a_live_run_and_keeps_its_files(pipeline, status):
    run, log, metrics = _run_with_files(pipeline, status)

    with pytest.raises(RunStateConflict, match="only a finished run can be deleted"):
        run_delete(run=run)

    assert PipelineRun.objects.filter(id=run.id).exists()
    assert log.exists() and metrics.exists()


def test_delete_never_touches_a_file_outside_the_data_dir(pipeline, tmp_path):
    run, _, _ = _run_with_files(pipeline, RunStatus.SUCCESS)
    outside = tmp_path / "outside.log"
    outside.write_text("not fastflow's\n")
    escaping = Path(settings.LOGS_DIR) / ".." / ".." / "outside.log"
    PipelineRun.objects.filter(id=run.id).update(log_file=str(escaping), metrics_file="")

    run_delete(run=run)

    assert not PipelineRun.objects.filter(id=run.id).exists()
    assert outside.read_text() == "not fastflow's\n"


def test_delete_of_a_run_whose_files_are_gone_deletes_the_row(pipeline):
    run, log, metrics = _run_with_files(pipeline, RunStatus.FAILED)
    log.unlink()
    metrics.unlink()

    run_delete(run=run)

    assert not PipelineRun.objects.filter(id=run.id).exists()
