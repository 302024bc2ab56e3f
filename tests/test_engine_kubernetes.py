"""The engine's real dispatcher and reconciliation with the Kubernetes executor, against the
HTTP-level API server of `helpers_k8s.py` (pods run on the real Docker engine)."""

from __future__ import annotations

import pytest

from runs_app.engine.dispatcher import run_spec_build
from runs_app.engine.executors import get_executor
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_claim_next, run_enqueue, run_record_start
from tests.helpers_api import client_for
from tests.helpers_engine import ThreadEngine, make_pipeline, wait_for, wait_until_finished
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
