"""The engine's real dispatcher and reconciliation with the Kubernetes executor, against the
HTTP-level API server of `helpers_k8s.py` (pods run on the real Docker engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs_app.engine.dispatcher import run_spec_build
from runs_app.engine.executors import get_executor
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_claim_next, run_enqueue, run_record_start
from tests.helpers_api import client_for
from tests.helpers_engine import (
    EngineProcess,
    ThreadEngine,
    log_text,
    make_pipeline,
    run_refreshed,
    wait_for,
    wait_until_finished,
)
from tests.helpers_executor import log_entries
from tests.helpers_executor import user_lines as spec_user_lines

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

COUNTING = (
    "import time\nfor i in range(1, 9):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
)


def test_an_enqueued_run_runs_as_a_job_and_its_log_is_served_by_the_api(k8s_cluster):
    pipeline = make_pipeline("podded", "print('hello from a pod')\n")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine(executor="kubernetes") as engine:
        wait_until_finished(run)
        wait_for(lambda: not k8s_cluster.jobs, what="the run's Job to be deleted")
        wait_for(lambda: engine.dispatcher.free_slots == engine.dispatcher.slots)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.exit_code == 0 and run.container_id == f"fastflow-run-{run.id}"
    assert run.limits["executor"] == "kubernetes" and "pids" not in run.limits
    assert run.setup_duration is not None
    response = client_for("READONLY").get(f"/api/runs/{run.id}/logs/")
    assert response.status_code == 200
    assert "hello from a pod" in response.content.decode()
    assert [job["metadata"]["name"] for job in k8s_cluster.created_jobs] == [run.container_id]


def test_a_job_whose_engine_died_is_reattached_by_reconcile_and_finishes(k8s_cluster):
    pipeline = make_pipeline("orphaned", COUNTING)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    claimed = run_claim_next(engine_id="gone-host:4242:dead")
    spec, environment = run_spec_build(run=claimed)
    executor = get_executor("kubernetes")
    execution = executor.start(spec)  # the Job runs; nobody follows it
    run_record_start(
        run=claimed,
        container_id=execution.handle_id,
        env_vars=environment.masked,
        limits=executor.limits_in_force(spec),
        log_file=spec.log_file,
        metrics_file=spec.metrics_file,
    )

    with ThreadEngine(executor="kubernetes"):
        wait_until_finished(run, timeout=120)

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.requeue_count == 0
    assert spec_user_lines(spec) == [f"line {i}" for i in range(1, 9)]  # once, all of it
    assert PipelineRun.objects.get(id=run.id).engine_id != "gone-host:4242:dead"


def test_an_unreachable_api_server_leaves_runs_queued_until_it_is_back(k8s_cluster):
    pipeline = make_pipeline("patient", "print('eventually')\n")
    k8s_cluster.go_away()
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with ThreadEngine(executor="kubernetes") as engine:
        assert not engine.healthy  # check() failed: nothing is claimed
        assert PipelineRun.objects.get(id=run.id).status == RunStatus.PENDING
        k8s_cluster.serve()
        engine.check_executor()
        wait_until_finished(run)

    assert run.status == RunStatus.SUCCESS, run.error_message


def test_a_kubernetes_run_survives_an_engine_crash_and_finishes_with_its_full_log(
    k8s_cluster, settings
):
    """kill -9 of the engine process mid-run; the next engine re-attaches the Job by label and
    resumes the log where the file ends (the API server lives on in the test process)."""
    env = {
        "FASTFLOW_K8S_KUBECONFIG": settings.FASTFLOW_K8S_KUBECONFIG,
        "FASTFLOW_K8S_NAMESPACE": settings.FASTFLOW_K8S_NAMESPACE,
        "FASTFLOW_K8S_PIPELINES_VOLUME": f"host:{settings.PIPELINES_DIR}",
        "FASTFLOW_K8S_OUTPUT_VOLUME": f"host:{settings.DATA_DIR}",
        "FASTFLOW_K8S_POLL_SECONDS": "0.2",
        "FASTFLOW_RUNNER_IMAGE": settings.FASTFLOW_RUNNER_IMAGE,
        "FASTFLOW_RUNNER_PULL": "false",
    }
    pipeline = make_pipeline("survivor", COUNTING)
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    crashing = EngineProcess("crashing", executor="kubernetes", **env).start()
    try:
        crashing.wait_registered()
        wait_for(lambda: "line 2" in log_text(run), timeout=120, what="line 2 in the log")
    finally:
        crashing.kill()
    assert run_refreshed(run).status == RunStatus.RUNNING

    with EngineProcess("recovering", executor="kubernetes", **env) as engine:
        new_id = engine.wait_registered()
        wait_until_finished(run, timeout=120)
        wait_for(lambda: not k8s_cluster.jobs, what="the run's Job to be deleted")

    assert run.status == RunStatus.SUCCESS, run.error_message
    assert run.engine_id == new_id
    lines = [line.text for line in log_entries(Path(run.log_file)) if line.source in ("o", "e")]
    assert lines == [f"line {i}" for i in range(1, 9)]  # nothing lost, nothing twice
    assert len(k8s_cluster.created_jobs) == 1  # it ran once
