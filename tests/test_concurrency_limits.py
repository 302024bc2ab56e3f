"""FASTFLOW_MAX_CONCURRENT_RUNS (global) and max_instances (per pipeline): runs over the limit
wait in PENDING, oldest first, and are never rejected."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_claim, run_claim_next, run_enqueue
from tests.helpers_engine import ThreadEngine, finish_claimed, make_pipeline, wait_until_finished


@pytest.mark.django_db
def test_the_global_limit_keeps_runs_waiting_oldest_first(settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 2
    pipeline = make_pipeline("work")
    runs = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(4)]

    first = run_claim_next(engine_id="e1")
    second = run_claim_next(engine_id="e2")  # the limit is global, not per engine

    assert [first.id, second.id] == [runs[0].id, runs[1].id]
    assert run_claim_next(engine_id="e1") is None
    assert PipelineRun.objects.filter(status=RunStatus.PENDING).count() == 2

    finish_claimed(first, 0)
    assert run_claim_next(engine_id="e1").id == runs[2].id


@pytest.mark.django_db
def test_max_instances_holds_back_only_that_pipeline(settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 10
    single = make_pipeline("single", pipeline_json={"max_instances": 1})
    other = make_pipeline("other")
    s1 = run_enqueue(pipeline=single, triggered_by="manual")
    s2 = run_enqueue(pipeline=single, triggered_by="manual")
    o1 = run_enqueue(pipeline=other, triggered_by="manual")

    assert run_claim_next(engine_id="e").id == s1.id
    assert run_claim_next(engine_id="e").id == o1.id  # s2 is skipped, not blocking the queue
    assert run_claim_next(engine_id="e") is None

    finish_claimed(PipelineRun.objects.get(id=s1.id), 0)
    assert run_claim_next(engine_id="e").id == s2.id


@pytest.mark.django_db
def test_the_claim_reads_every_running_pipelines_limit_in_one_query(settings):
    """The claim holds the global lock: its queries must not grow with the running pipelines."""
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 100

    def claim_queries() -> int:
        run_enqueue(pipeline=make_pipeline("next"), triggered_by="manual")
        with CaptureQueriesContext(connection) as captured:
            assert run_claim_next(engine_id="e") is not None
        return len(captured)

    for index in range(2):
        claim = make_pipeline(f"busy{index}", pipeline_json={"max_instances": 3})
        run_enqueue(pipeline=claim, triggered_by="manual")
        run_claim_next(engine_id="e")
    with_two = claim_queries()
    for index in range(2, 8):
        claim = make_pipeline(f"busy{index}", pipeline_json={"max_instances": 3})
        run_enqueue(pipeline=claim, triggered_by="manual")
        run_claim_next(engine_id="e")

    assert claim_queries() == with_two


@pytest.mark.django_db
def test_a_batch_claim_keeps_both_limits_and_the_queue_order(settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 5
    single = make_pipeline("single", pipeline_json={"max_instances": 2})
    other = make_pipeline("other")
    queued = [
        run_enqueue(pipeline=pipeline, triggered_by="manual")
        for pipeline in (single, single, single, other, other, other, other)
    ]

    batch = run_claim(engine_id="e", limit=10)

    # max_instances 2 within the batch (no run of it was running before), then the global 5.
    assert [run.id for run in batch] == [r.id for r in (*queued[:2], *queued[3:6])]
    assert all(run.status == RunStatus.RUNNING and run.engine_id == "e" for run in batch)
    stored = PipelineRun.objects.filter(status=RunStatus.RUNNING).values_list("id", "started_at")
    assert dict(stored) == {run.id: run.started_at for run in batch}  # as returned, no re-read
    assert batch[0].pipeline.pipeline_name == "single"  # loaded with the claim
    assert run_claim(engine_id="e", limit=10) == []


@pytest.mark.django_db
def test_a_batch_claim_takes_no_more_than_asked(settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 10
    pipeline = make_pipeline("many")
    queued = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(6)]

    assert [run.id for run in run_claim(engine_id="e", limit=4)] == [r.id for r in queued[:4]]
    assert [run.id for run in run_claim(engine_id="e", limit=4)] == [r.id for r in queued[4:]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batch", [1, 3])
def test_concurrent_claimers_never_exceed_the_limit(settings, batch):
    """Eight threads (each with its own DB connection) race to claim 30 runs, limit 5, one or
    three at a time."""
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 5
    pipeline = make_pipeline("race")
    for _ in range(30):
        run_enqueue(pipeline=pipeline, triggered_by="manual")
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(n: int) -> None:
        try:
            start.wait()
            for _ in range(10):
                runs = run_claim(engine_id=f"engine-{n}", limit=batch)
                with lock:
                    claimed.extend(str(run.id) for run in runs)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(claimed) == 5
    assert len(set(claimed)) == 5
    assert PipelineRun.objects.filter(status=RunStatus.RUNNING).count() == 5


@pytest.mark.django_db(transaction=True)
def test_max_instances_one_runs_a_pipeline_strictly_one_at_a_time(settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 4
    pipeline = make_pipeline(
        "serial", "import time\ntime.sleep(0.5)\n", pipeline_json={"max_instances": 1}
    )
    runs = [run_enqueue(pipeline=pipeline, triggered_by="manual") for _ in range(3)]

    with ThreadEngine():
        for run in runs:
            wait_until_finished(run)

    assert [r.status for r in runs] == [RunStatus.SUCCESS] * 3
    ordered = sorted(runs, key=lambda r: r.started_at)
    assert [r.id for r in ordered] == [r.id for r in runs]  # queue order
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert later.started_at >= earlier.finished_at
