"""The engine drives runs end to end: claim → real executor → finish (local executor, and the
docker executor where the behaviour is docker's own)."""

from __future__ import annotations

import json

import pytest

from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_cancel, run_enqueue
from secrets_app.services import secret_set
from tests.helpers_engine import (
    ThreadEngine,
    log_text,
    make_pipeline,
    run_refreshed,
    wait_for,
    wait_until_finished,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_a_pipeline_to_success():
    pipeline = make_pipeline("hello", "print('hello from the pipeline')\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine() as engine:
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.exit_code == 0
    assert run.engine_id == engine.engine_id
    assert run.container_id  # the local executor's pid
    assert run.started_at <= run.finished_at
    assert run.setup_duration is not None
    assert run.log_file.endswith(f"logs/hello/{run.id.hex[:2]}/{run.id}.log")
    assert run.metrics_file.endswith(f"metrics/hello/{run.id.hex[:2]}/{run.id}.jsonl")
    assert run.duration == (run.finished_at - run.started_at).total_seconds()
    assert "hello from the pipeline" in log_text(run)
    pipeline.refresh_from_db()
    assert (pipeline.total_runs, pipeline.successful_runs) == (1, 1)


def test_a_failing_pipeline_fails_with_its_exit_code():
    pipeline = make_pipeline("broken", "import sys\nprint('oops')\nsys.exit(3)\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(run)

    assert run.status == RunStatus.FAILED
    assert run.exit_code == 3
    assert "3" in run.error_message
    assert "oops" in log_text(run)


def test_a_timeout_kills_the_run_and_says_so():
    pipeline = make_pipeline(
        "slow", "import time\nprint('start')\ntime.sleep(60)\n", pipeline_json={"timeout": 1}
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(run, timeout=30)

    assert run.status == RunStatus.FAILED
    assert "timeout" in run.error_message.lower() or "timed out" in run.error_message.lower()
    assert "start" in log_text(run)


def test_cancelling_a_running_run_stops_it():
    pipeline = make_pipeline(
        "sleeper", "import time\nprint('working', flush=True)\ntime.sleep(60)\n"
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_for(lambda: "working" in log_text(run), what="the run to print")
        run_cancel(run=run)
        wait_until_finished(run, timeout=30)

    assert run.status == RunStatus.CANCELLED
    assert run.cancel_requested_at is not None
    assert "cancelled" in log_text(run)


def test_a_cancelled_pending_run_never_starts():
    pipeline = make_pipeline("hello")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    run_cancel(run=run)
    other = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(other)

    assert run_refreshed(run).status == RunStatus.CANCELLED
    assert run.started_at is None and run.log_file == ""


def test_parameters_arrive_as_environment_variables():
    pipeline = make_pipeline(
        "greet",
        "import os\nprint('greeting=' + os.environ['GREETING'])\n",
        pipeline_json={"default_env": {"GREETING": "from defaults"}},
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual", parameters={"GREETING": "hi"})

    with ThreadEngine():
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert "greeting=hi" in log_text(run)
    assert run.env_vars["GREETING"] == "hi"


def test_secrets_reach_the_run_but_are_masked_in_env_vars_and_log():
    secret_set(key="API_TOKEN", value="s3cr3t-value-42")
    pipeline = make_pipeline(
        "uses_secret",
        "import os\nprint('token is', os.environ['API_TOKEN'])\n"
        "print('length', len(os.environ['API_TOKEN']))\n",
        pipeline_json={"secrets": ["API_TOKEN"]},
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(run)

    text = log_text(run)
    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.env_vars["API_TOKEN"] == "***"
    assert "s3cr3t-value-42" not in json.dumps(run.env_vars)
    assert "token is ***" in text
    assert "length 15" in text  # the real value reached the process
    assert "s3cr3t-value-42" not in text


def test_a_missing_secret_fails_the_run_clearly_without_running_it():
    pipeline = make_pipeline(
        "needs_secret", "print('should not run')\n", pipeline_json={"secrets": ["NOPE_TOKEN"]}
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(run)

    assert run.status == RunStatus.FAILED
    assert "NOPE_TOKEN" in run.error_message
    assert "not found" in run.error_message
    assert run.container_id == ""
    text = log_text(run)
    assert "NOPE_TOKEN" in text and "should not run" not in text


def test_many_runs_share_the_slots(settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 3
    pipeline = make_pipeline("quick", "print('quick')\n")
    runs = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(8)]

    with ThreadEngine():
        for run in runs:
            wait_until_finished(run)

    assert {r.status for r in runs} == {RunStatus.SUCCESS}
    assert PipelineRun.objects.filter(status=RunStatus.SUCCESS).count() == 8


def test_an_engine_with_every_slot_busy_sleeps_until_a_run_ends(settings):
    """With nothing it can claim, the loop waits for a run to end (the wake-up), not for a claim
    time already past: it must not spin while its runs work."""
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 1
    pipeline = make_pipeline("busy", "import time\nprint('working', flush=True)\ntime.sleep(3)\n")
    first, second = (run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(2))

    with ThreadEngine() as engine:
        wait_for(lambda: "working" in log_text(first), what="the first run to work")
        steps = 0
        original = engine.step

        def counted() -> None:
            nonlocal steps
            steps += 1
            original()

        engine.step = counted
        wait_for(lambda: run_refreshed(first).status == RunStatus.SUCCESS, what="its end")
        busy_steps = steps
        wait_until_finished(second)

    # About two seconds with the only slot busy: a few cancellation checks, not a busy loop
    # (which made tens of thousands of steps).
    assert busy_steps < 50, busy_steps
    assert run_refreshed(second).status == RunStatus.SUCCESS


def test_a_run_that_breaks_the_dispatcher_fails_and_the_engine_carries_on():
    """Poison pill: a hand-corrupted pipeline row makes preparing its run raise."""
    from pipelines_app.models import Pipeline

    corrupt = make_pipeline("corrupt")
    healthy = make_pipeline("healthy")
    bad = run_enqueue(pipeline=corrupt, triggered_by="manual")
    Pipeline.objects.filter(pipeline_name="corrupt").update(metadata={"timeout": "soon"})
    good = run_enqueue(pipeline=healthy, triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(bad)
        wait_until_finished(good)

    assert bad.status == RunStatus.FAILED
    assert bad.error_message.startswith("engine error:")
    assert "'timeout'" in bad.error_message
    assert good.status == RunStatus.SUCCESS


@pytest.mark.docker
def test_a_missing_runner_image_fails_the_run_with_a_clear_infrastructure_error(
    docker_engine, settings
):
    settings.FASTFLOW_RUNNER_IMAGE = "fastflow-runner:does-not-exist-{python_version}"
    pipeline = make_pipeline("imageless", "print('never')\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    later = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine(executor="docker") as engine:
        wait_until_finished(run)
        wait_until_finished(later)  # the engine carried on
        # Each worker gives its slot back right after recording the failure.
        wait_for(lambda: engine.dispatcher.free_slots == engine.dispatcher.slots)

    assert run.status == RunStatus.FAILED
    assert "does-not-exist" in run.error_message
    assert run.container_id == ""
    assert "never" not in log_text(run)
    assert "does-not-exist" in log_text(run)


@pytest.mark.docker
def test_a_docker_run_finishes_and_its_container_is_removed_afterwards(docker_engine, settings):
    import docker

    from tests.helpers_executor import use_runner_image

    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    pipeline = make_pipeline("boxed", "print('inside')\nraise SystemExit(2)\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    def containers() -> list:
        labels = f"fastflow.run_id={run.id}"
        return docker.from_env().containers.list(
            all=True, filters={"label": labels}, ignore_removed=True
        )

    with ThreadEngine(executor="docker") as engine:
        wait_until_finished(run)
        wait_for(lambda: not containers(), what="the run's container to be removed")
        wait_for(lambda: engine.dispatcher.free_slots == engine.dispatcher.slots)

    assert run.status == RunStatus.FAILED and run.exit_code == 2
    assert "inside" in log_text(run)


def test_a_queued_run_does_not_start_once_its_pipeline_is_disabled_or_broken(settings):
    """A run waiting in the queue (over a limit, a delayed retry) whose pipeline was then
    disabled, or whose pipeline.json broke, fails with the reason instead of running main.py
    (a broken pipeline.json would otherwise run with default settings)."""
    from pipelines_app.services import pipeline_set_enabled, pipelines_sync

    off = make_pipeline("off", "open('ran', 'w')\nprint('it ran')\n")
    broken = make_pipeline("broken", "print('it ran')\n", pipeline_json={"timeout": 60})
    first = run_enqueue(pipeline=off, triggered_by="manual")
    second = run_enqueue(pipeline=broken, triggered_by="manual")
    pipeline_set_enabled(pipeline=off, enabled=False)
    (broken.folder / "pipeline.json").write_text("{not json")
    pipelines_sync()

    with ThreadEngine():
        wait_until_finished(first)
        wait_until_finished(second)

    assert first.status == RunStatus.FAILED
    assert "not started: pipeline 'off' is disabled" in first.error_message
    assert second.status == RunStatus.FAILED
    assert "not started: pipeline 'broken' has a configuration error" in second.error_message
    for run in (first, second):
        assert "it ran" not in log_text(run)
        assert "not started" in log_text(run)
