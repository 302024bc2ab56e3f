"""Recovery: runs of an engine that died are re-attached, finished or failed; orphans removed.
No run stays RUNNING forever."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import docker
import psutil
import pytest
from django.utils import timezone

from runs_app.engine.dispatcher import Dispatcher, run_spec_build
from runs_app.engine.executors import get_executor
from runs_app.engine.reconcile import reconcile
from runs_app.logs import log_lines_parse
from runs_app.models import EngineInstance, PipelineRun, RunStatus
from runs_app.services import run_claim_next, run_enqueue, run_fail
from tests.helpers_engine import (
    EngineProcess,
    ThreadEngine,
    log_text,
    make_pipeline,
    run_refreshed,
    wait_for,
    wait_until_finished,
)
from tests.helpers_executor import text_lines

pytestmark = pytest.mark.django_db(transaction=True)

COUNTING = (
    "import time\nfor i in range(1, 9):\n    print('line', i, flush=True)\n    time.sleep(0.5)\n"
)


def user_lines(run: PipelineRun) -> list[str]:
    """What the pipeline printed, without timestamps and engine notes."""
    return [line.text for line in log_lines_parse(log_text(run).encode()) if not line.is_note]


def run_containers(run: PipelineRun) -> list:
    return docker.from_env().containers.list(
        all=True, filters={"label": f"fastflow.run_id={run.id}"}, ignore_removed=True
    )


def crash_mid_run(run: PipelineRun, after: str, **env: str) -> EngineProcess:
    """Start an engine, let it start `run`, and kill -9 it once `after` is in the log."""
    engine = EngineProcess("crashing", **env).start()
    try:
        engine.wait_registered()
        wait_for(lambda: after in log_text(run), timeout=120, what=f"{after!r} in the log")
    finally:
        engine.kill()
    assert run_refreshed(run).status == RunStatus.RUNNING
    return engine


@pytest.mark.docker
def test_a_docker_run_survives_an_engine_crash_and_finishes_with_its_full_log(docker_env):
    pipeline = make_pipeline("survivor", COUNTING)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    crash_mid_run(run, "line 2", executor="docker", **docker_env)
    crashed_engine = run.engine_id

    with EngineProcess("recovering", executor="docker", **docker_env) as engine:
        new_id = engine.wait_registered()
        wait_until_finished(run, timeout=120)
        # The container is removed just after the status is recorded (cleanup follows finish).
        wait_for(lambda: run_containers(run) == [], what="the run's container to be removed")

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.engine_id == new_id
    assert user_lines(run) == [f"line {i}" for i in range(1, 9)]  # nothing lost, nothing twice
    assert run.setup_duration is not None
    assert not EngineInstance.objects.filter(id=crashed_engine).exists()


@pytest.mark.docker
def test_a_docker_run_that_ended_while_no_engine_ran_is_finished_from_its_exit_code(docker_env):
    pipeline = make_pipeline(
        "ends_alone", "import sys, time\nprint('started', flush=True)\ntime.sleep(1)\nsys.exit(4)\n"
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    crash_mid_run(run, "started", executor="docker", **docker_env)
    docker.from_env().containers.get(run.container_id).wait(timeout=60)

    with EngineProcess("recovering", executor="docker", **docker_env) as engine:
        engine.wait_registered()
        wait_until_finished(run, timeout=60)
        wait_for(lambda: run_containers(run) == [], what="the run's container to be removed")

    assert run.status == RunStatus.FAILED
    assert run.exit_code == 4
    assert user_lines(run) == ["started"]


@pytest.mark.docker
def test_a_graceful_shutdown_leaves_docker_runs_for_the_next_engine(docker_env):
    pipeline = make_pipeline("long", COUNTING)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    first = EngineProcess("first", executor="docker", **docker_env).start()
    first.wait_registered()
    wait_for(lambda: "line 1" in log_text(run), timeout=120, what="the run to start")

    assert first.terminate(timeout=20) == 0  # does not wait for the container
    assert run_refreshed(run).status == RunStatus.RUNNING
    assert [c.status for c in run_containers(run)] == ["running"]
    with EngineProcess("second", executor="docker", **docker_env) as second:
        second.wait_registered()
        wait_until_finished(run, timeout=120)

    assert run.status == RunStatus.SUCCESS
    assert user_lines(run) == [f"line {i}" for i in range(1, 9)]


def test_a_local_run_of_a_crashed_engine_is_failed_and_its_processes_killed():
    pipeline = make_pipeline(
        "local_survivor", "import time\nprint('working', flush=True)\ntime.sleep(120)\n"
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    crash_mid_run(run, "working")
    pid = int(run.container_id)
    assert psutil.pid_exists(pid)  # the engine died, its run did not

    with EngineProcess("recovering") as engine:
        engine.wait_registered()
        wait_until_finished(run, timeout=60)

    assert run.status == RunStatus.FAILED
    assert "stopped" in run.error_message and "cannot be re-attached" in run.error_message
    assert "run failed:" in log_text(run)
    wait_for(lambda: not _alive(pid), timeout=10, what=f"process group {pid} to be gone")


def test_a_graceful_shutdown_stops_local_runs_and_says_why():
    pipeline = make_pipeline(
        "local_long", "import time\nprint('working', flush=True)\ntime.sleep(120)\n"
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    engine = EngineProcess("stopping", FASTFLOW_CANCEL_GRACE_SECONDS="1").start()
    engine_id = engine.wait_registered()
    wait_for(lambda: "working" in log_text(run), timeout=60, what="the run to start")
    pid = int(run_refreshed(run).container_id)

    assert engine.terminate(timeout=30) == 0

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert f"runscheduler {engine_id} stopped while the run was in progress" in run.error_message
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reconcile_now() -> None:
    executor = get_executor("local")
    me = "test-host:1:me"
    reconcile(
        engine_id=me,
        executor=executor,
        dispatcher=Dispatcher(engine_id=me, executor=executor, slots=2),
    )


def test_a_run_whose_engine_died_before_starting_it_goes_back_to_the_queue(settings):
    settings.FASTFLOW_REQUEUE_MAX = 2
    pipeline = make_pipeline("never_started")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    queued_at = run.queued_at

    for attempt in (1, 2):
        run_claim_next(engine_id=f"gone-host:4242:dead{attempt}")
        reconcile_now()
        run.refresh_from_db()
        assert (run.status, run.requeue_count) == (RunStatus.PENDING, attempt)
        assert (run.engine_id, run.started_at, run.queued_at) == ("", None, queued_at)
    notes = [line for line in text_lines(Path(run.log_file)) if "back in the queue" in line]
    assert len(notes) == 2 and "gone-host:4242:dead2" in notes[1] and "(2 of 2)" in notes[1]

    run_claim_next(engine_id="gone-host:4242:dead3")  # a third time: bounded
    reconcile_now()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "gone-host:4242:dead3" in run.error_message
    assert "stopped before starting it, and it was re-queued 2 times already" in run.error_message


def test_a_requeued_run_runs_once_on_the_next_engine():
    pipeline = make_pipeline("second_chance", "print('ran', flush=True)\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    run_claim_next(engine_id="gone-host:4242:dead")
    reconcile_now()
    assert run_refreshed(run).status == RunStatus.PENDING

    with ThreadEngine():
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert user_lines(run) == ["ran"]
    assert any("back in the queue (1 of" in line for line in text_lines(Path(run.log_file)))


def test_a_local_run_started_but_not_recorded_is_not_run_twice():
    """The engine died between starting the process and recording its pid: the process is
    found by the run id in its environment, so the run is not re-queued (it did start)."""
    pipeline = make_pipeline(
        "unrecorded", "import time\nprint('working', flush=True)\ntime.sleep(60)\n"
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    claimed = run_claim_next(engine_id="gone-host:4242:dead")
    spec, _ = run_spec_build(run=claimed)
    execution = get_executor("local").start(spec)  # and the engine "dies": nothing recorded
    pid = int(execution.handle_id)
    wait_for(lambda: "FASTFLOW_RUN_ID" in psutil.Process(pid).environ(), what="the process")

    reconcile_now()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.requeue_count == 0
    assert "cannot be re-attached" in run.error_message
    execution._process.wait(timeout=10)  # killed by the recovery; reap our own child
    assert not _alive(pid)


@pytest.mark.docker
def test_a_docker_run_whose_container_was_created_but_not_started_is_requeued(docker_env, settings):
    settings.FASTFLOW_RUNNER_IMAGE = docker_env["FASTFLOW_RUNNER_IMAGE"]
    pipeline = make_pipeline("created_only")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    claimed = run_claim_next(engine_id="gone-host:4242:dead")
    executor = get_executor("docker")
    spec, _ = run_spec_build(run=claimed)
    image = executor.ensure_image(spec.python_version)
    command, mounts, env, _ = executor.run_command(spec, image)
    labels = {"fastflow.run_id": spec.run_id, "fastflow.pipeline": spec.pipeline_name}
    executor.client.containers.create(
        **executor.container_options(
            spec, image=image, command=command, labels=labels, mounts=mounts, env=env
        )
    )  # ... and the engine died before start()

    reconcile(
        engine_id="test-host:1:me",
        executor=executor,
        dispatcher=Dispatcher(engine_id="test-host:1:me", executor=executor, slots=1),
    )

    run.refresh_from_db()
    assert (run.status, run.requeue_count) == (RunStatus.PENDING, 1)
    assert run_containers(run) == []


@pytest.mark.docker
def test_a_docker_run_started_but_not_recorded_is_reattached(docker_env, settings):
    settings.FASTFLOW_RUNNER_IMAGE = docker_env["FASTFLOW_RUNNER_IMAGE"]
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    pipeline = make_pipeline("unrecorded_docker", COUNTING)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    claimed = run_claim_next(engine_id="gone-host:4242:dead")
    spec, _ = run_spec_build(run=claimed)
    get_executor("docker").start(spec)  # the container runs; its id was never recorded
    PipelineRun.objects.filter(id=run.id).update(log_file=str(spec.log_file))

    with ThreadEngine(executor="docker"):
        wait_until_finished(run, timeout=120)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.requeue_count == 0
    assert user_lines(run) == [f"line {i}" for i in range(1, 9)]  # it ran once, all of it


def test_runs_of_an_engine_with_a_stale_heartbeat_are_recovered_and_its_row_removed(settings):
    pipeline = make_pipeline("stale")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    EngineInstance.objects.create(
        id="far-host:1:old",
        hostname="far-host",
        pid=1,
        executor="local",
        heartbeat_at=timezone.now()
        - timedelta(seconds=settings.FASTFLOW_HEARTBEAT_STALE_SECONDS + 5),
    )
    run_claim_next(engine_id="far-host:1:old")

    reconcile_now()

    assert run_refreshed(run).status == RunStatus.PENDING  # it never started: queued again
    assert not EngineInstance.objects.filter(id="far-host:1:old").exists()


def test_runs_of_a_live_engine_are_left_alone():
    pipeline = make_pipeline("busy")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    EngineInstance.objects.create(
        id="other-host:7:live", hostname="other-host", pid=7, executor="x"
    )
    run_claim_next(engine_id="other-host:7:live")

    reconcile_now()

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.engine_id == "other-host:7:live"


def test_an_own_run_no_worker_drives_any_more_is_not_left_running():
    pipeline = make_pipeline("lost")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    run_claim_next(engine_id="test-host:1:me")
    recent = run_enqueue(pipeline=pipeline, triggered_by="manual")
    run_claim_next(engine_id="test-host:1:me")  # just claimed: its worker may be starting
    PipelineRun.objects.filter(id=run.id).update(started_at=timezone.now() - timedelta(minutes=5))

    reconcile_now()

    run.refresh_from_db()
    assert run.status == RunStatus.PENDING  # it never started: queued again
    assert any("test-host:1:me" in line for line in text_lines(Path(run.log_file)))
    assert run_refreshed(recent).status == RunStatus.RUNNING


@pytest.mark.docker
def test_containers_without_an_active_run_are_removed(docker_env, settings):
    settings.FASTFLOW_RUNNER_IMAGE = docker_env["FASTFLOW_RUNNER_IMAGE"]
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    pipeline = make_pipeline("orphaned", "import time\ntime.sleep(60)\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    claimed = run_claim_next(engine_id="test-host:1:me")
    executor = get_executor("docker")
    spec, _ = run_spec_build(run=claimed)
    executor.start(spec)
    stranger = executor.start(spec.__class__(**{**spec.__dict__, "run_id": str(uuid.uuid4())}))
    run_fail(run=claimed, reason="finished while its container lingered")
    time.sleep(0.5)

    reconcile(
        engine_id="test-host:1:me",
        executor=executor,
        dispatcher=Dispatcher(engine_id="test-host:1:me", executor=executor, slots=1),
    )

    assert run_containers(run) == []
    assert docker.from_env().containers.list(all=True, filters={"id": stranger.handle_id}) == []
    assert os.path.exists(spec.pipeline_dir)  # only containers are touched


# Prints three lines, waits (printing nothing) until the test creates the file `go` in the
# pipeline folder (mounted at /app), then prints three more.
GATED = (
    "import os, time\n"
    "for i in range(1, 4):\n    print('line', i, flush=True)\n"
    "while not os.path.exists('/app/go'):\n    time.sleep(0.1)\n"
    "for i in range(4, 7):\n    print('line', i, flush=True)\n"
)


@pytest.mark.docker
def test_an_engine_whose_run_was_taken_over_stops_following_it(docker_env, settings):
    """A live engine whose heartbeat went stale (e.g. a database stall) loses its run to
    another engine, which re-attaches the container; the first engine must notice and stop
    writing the log, or every later line would be written twice."""
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 2
    pipeline = make_pipeline("contested", GATED)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine(executor="docker") as first:
        wait_for(lambda: "line 3" in log_text(run), timeout=120, what="the run to start")
        assert run_refreshed(run).engine_id == first.engine_id
        # Its heartbeat stops, as during a database stall; the engine itself carries on.
        next(t for t in first._threads if t.name == "heartbeat").stop()
        env = {**docker_env, "FASTFLOW_HEARTBEAT_STALE_SECONDS": "2"}
        with EngineProcess("second", executor="docker", **env) as second:
            second_id = second.wait_registered()
            wait_for(
                lambda: run_refreshed(run).engine_id == second_id,
                timeout=60,
                what="the second engine to take the run over",
            )
            wait_for(
                lambda: str(run.id) not in first.dispatcher.active_run_ids(),
                timeout=30,
                what="the first engine to let go of the run",
            )
            wait_for(lambda: "re-attached" in second.read_output(), what="the re-attach")
            (pipeline.folder / "go").write_text("")
            wait_until_finished(run, timeout=120)
            wait_for(lambda: not run_containers(run), what="the container to be removed")
        assert first.dispatcher.free_slots == first.dispatcher.slots

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.engine_id == second_id
    assert user_lines(run) == [f"line {i}" for i in range(1, 7)]  # each line once
