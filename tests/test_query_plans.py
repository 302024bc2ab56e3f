"""The hot queries are answered by indexes, on SQLite and PostgreSQL (docs/schema.md, "Indexes
of pipeline_runs"): every list page, filter, sort, search and date link of the run admin, the
run API, the pipeline lists, the engine's claim and housekeeping, the idempotency lookup and
the statistics. A change that drops or bypasses an index fails here, not at a million runs.

Each test makes the real request (or calls the real service), captures the SQL it ran and
checks the plan of every statement on the table: no full scan, no sort of all matching rows,
and the named index for the query that matters.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role, User
from runs_app.admin_runs import PipelineRunAdmin
from runs_app.engine.loop import Engine
from runs_app.models import PipelineRun, RunStatus, ScheduledJob, TriggerType
from runs_app.period_stats import (
    failing_pipelines,
    period_stats_prune,
    period_summary,
    queue_depth,
    runs_per_period,
)
from runs_app.services import run_cancel, run_claim_next, run_enqueue
from tests import helpers_admin, helpers_api
from tests.helpers_plans import assert_indexed, planned_queries, the_query

pytestmark = pytest.mark.django_db

RUNS = reverse("admin:runs_app_pipelinerun_changelist")
COLUMNS = ["action_checkbox", *PipelineRunAdmin.list_display]


STATUSES = list(RunStatus)
TRIGGERS = ["scheduler", "webhook", "manual"]


@pytest.fixture
def history() -> dict:
    """360 runs of every kind: each status, trigger and pipeline has more than a page (50) of
    them, so every list runs its LIMIT query, as at any real size (SQLite's choice of plan
    depends on the LIMIT; a list that fits one page is fetched whole)."""
    now = timezone.now()
    etl = helpers_admin.make_pipeline("etl")
    other = helpers_admin.make_pipeline("other")
    job = ScheduledJob.objects.create(
        pipeline=etl, trigger_type=TriggerType.CRON, trigger_value="0 3 * * *"
    )
    rows = []
    for i in range(360):
        status = STATUSES[i % len(STATUSES)]
        queued = now - timedelta(minutes=i)
        started = None if status == RunStatus.PENDING else queued + timedelta(seconds=1)
        ended = status in (RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED)
        trigger = TRIGGERS[i % len(TRIGGERS)]
        rows.append(
            PipelineRun(
                pipeline=etl if i % 2 else other,
                status=status,
                triggered_by=trigger,
                queued_at=queued,
                started_at=started,
                finished_at=started + timedelta(seconds=i) if ended else None,
                duration=float(i) if ended else None,
                scheduled_job=job if trigger == "scheduler" else None,
                idempotency_key=f"schedule:{job.id}:{i}" if trigger == "scheduler" else "",
            )
        )
    PipelineRun.objects.bulk_create(rows)
    by_status = {status: PipelineRun.objects.filter(status=status).first() for status in STATUSES}
    helpers_admin.make_run(etl, RunStatus.PENDING, parent_run=by_status[RunStatus.FAILED])
    return {"runs": by_status, "job": job, "now": now}


def admin_page(path: str, params: dict | None = None, *, sorts: bool = False):
    """The plans of one admin page (as ADMIN: the list has its action column); `sorts`: the
    page may sort the rows an index range found (e.g. those of a run id prefix)."""
    admin, _ = User.objects.get_or_create(username="plans-admin", defaults={"role": Role.ADMIN})
    client = Client()
    client.force_login(admin)
    with planned_queries() as found:
        response = client.get(path, params or {})
    assert response.status_code == 200, response.content[:300]
    assert_indexed(found, sorts=sorts)
    return found


def order_param(column: str, descending: bool) -> str:
    return f"{'-' if descending else ''}{COLUMNS.index(column)}"


# --- the run admin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({}, "run_queued_idx"),
        ({"p": "2"}, "run_queued_idx"),
        ({"status__exact": "FAILED"}, "run_status_queued_idx"),
        ({"status__exact": "PENDING"}, "run_status_queued_idx"),
        ({"triggered_by": "webhook"}, "run_trigger_queued_idx"),
        ({"pipeline__pipeline_name__exact": "etl"}, "run_pipeline_queued_idx"),
        ({"q": "etl"}, "run_pipeline_queued_idx"),
    ],
)
def test_the_run_list_and_its_filters_read_one_index_range(history, params, index):
    found = admin_page(RUNS, params)

    assert the_query(found, "LIMIT 50").served_by(index)


@pytest.mark.parametrize(
    ("column", "index"),
    [
        ("short_id", "PK"),
        ("pipeline_link", "run_pipeline_queued_idx"),
        ("status_column", "run_status_queued_idx"),
        ("triggered_by", "run_trigger_queued_idx"),
        ("queued_at", "run_queued_idx"),
        ("started_at", "run_started_idx"),
        ("finished_at", "run_finished_idx"),
        ("duration_column", "run_duration_idx"),
    ],
)
@pytest.mark.parametrize("descending", [False, True])
def test_every_sortable_column_is_sorted_by_an_index(history, column, index, descending):
    found = admin_page(RUNS, {"o": order_param(column, descending)})

    assert the_query(found, "LIMIT 50").served_by(index)


def test_the_columns_without_an_index_are_not_sortable():
    sortable = set(PipelineRunAdmin.sortable_by)

    assert "exit_code" not in sortable and "setup_duration_column" not in sortable
    assert sortable <= set(PipelineRunAdmin.list_display)


def test_a_run_id_prefix_is_searched_on_the_primary_key(history):
    run = history["runs"][RunStatus.FAILED]

    for term in (str(run.pk)[:8], str(run.pk)):
        # A prefix of 4+ hex digits matches 1/65536 of the runs or fewer: sorting those is fine.
        found = admin_page(RUNS, {"q": term}, sorts=True)
        listed = the_query(found, lambda sql: '"queued_at" DESC' in sql and '"id" >=' in sql)
        assert listed.served_by("PK", sorts=True)


@pytest.mark.parametrize("level", ["year", "month", "day"])
def test_date_links_and_their_lists_read_the_queued_at_index(history, level):
    now = history["now"] - timedelta(hours=1)
    params = {"queued_at__year": now.year}
    if level in ("month", "day"):
        params["queued_at__month"] = now.month
    if level == "day":
        params["queued_at__day"] = now.day

    found = admin_page(RUNS, params)

    assert the_query(found, "LIMIT 50").served_by("run_queued_idx")
    probes = [p for p in found if ") IS NOT NULL" in p.sql]
    assert bool(probes) == (level != "day")  # a chosen day shows no links to probe for
    assert all(p.served_by("run_queued_idx") for p in probes)


def test_the_run_page_finds_child_runs_on_the_parent_index(history):
    parent = history["runs"][RunStatus.FAILED]

    found = admin_page(reverse("admin:runs_app_pipelinerun_change", args=[parent.pk]))

    assert the_query(found, '"parent_run_id" =').served_by("run_parent_idx")


def test_the_pipeline_list_reads_each_last_run_from_the_pipeline_index(history):
    found = admin_page(reverse("admin:pipelines_app_pipeline_changelist"))

    assert all(p.served_by("run_pipeline_queued_idx") for p in found)


# --- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({}, "run_queued_idx"),
        ({"status": "FAILED"}, "run_status_queued_idx"),
        ({"pipeline": "etl"}, "run_pipeline_queued_idx"),
        ({"triggered_by": "webhook"}, "run_trigger_queued_idx"),
        ({"since": "2020-01-01T00:00:00Z"}, "run_queued_idx"),
    ],
)
def test_every_page_of_the_run_api_is_one_index_range(history, params, index):
    client = helpers_api.client_for("READONLY")
    first = client.get("/api/runs/", {**params, "page_size": 1}).json()

    with planned_queries() as found:
        response = client.get(first["next"])

    assert response.status_code == 200
    assert_indexed(found)
    assert the_query(found, "LIMIT 2").served_by(index)
    assert not any("COUNT(" in p.sql.upper() for p in found)


def test_the_pipeline_api_reads_each_last_run_from_the_pipeline_index(history):
    client = helpers_api.client_for("READONLY")

    with planned_queries() as found:
        assert client.get("/api/pipelines/").status_code == 200

    assert_indexed(found)
    assert all(p.served_by("run_pipeline_queued_idx") for p in found)


# --- the engine: O(pending), not O(history) -----------------------------------------------------


def test_the_claim_reads_only_pending_and_running_runs(history, settings):
    settings.FASTFLOW_MAX_CONCURRENT_RUNS = 1000  # room next to the RUNNING runs here

    with planned_queries() as found:
        claimed = run_claim_next(engine_id="engine-1")

    assert claimed is not None
    assert_indexed(found)
    pending = the_query(found, lambda sql: "'PENDING'" in sql and sql.startswith("SELECT"))
    assert pending.served_by("run_status_queued_idx")


def test_the_poll_the_queue_depth_and_reconcile_read_the_status_index(history):
    with planned_queries() as found:
        Engine._runs_due()
        queue_depth()
        # reconcile's scan for RUNNING runs of engines that are gone
        list(PipelineRun.objects.filter(status=RunStatus.RUNNING).exclude(engine_id__in=["me"]))

    assert_indexed(found)
    assert all(p.served_by("run_status_queued_idx") for p in found)


def test_the_idempotency_lookup_uses_its_partial_index(history):
    pipeline = history["runs"][RunStatus.SUCCESS].pipeline

    with planned_queries() as found:
        run_enqueue(pipeline=pipeline, triggered_by="manual", idempotency_key="client-key-1")

    assert_indexed(found)
    lookup = the_query(found, "client-key-1' AND")
    assert lookup.served_by("run_idempotency_idx")


def test_deleting_a_schedule_unlinks_its_runs_on_the_schedule_index(history):
    with planned_queries() as found:
        history["job"].delete()

    assert_indexed(found)
    unlinking = [p for p in found if '"scheduled_job_id" IN' in p.sql]
    assert unlinking and all(p.served_by("run_schedule_idx") for p in unlinking)


def test_cancelling_reads_and_writes_one_run_by_its_key(history):
    with planned_queries() as found:
        run_cancel(run=history["runs"][RunStatus.PENDING])

    assert_indexed(found)


# --- the statistics -----------------------------------------------------------------------------


def test_the_statistics_read_a_window_of_their_own_rows(history):
    now = history["now"]
    etl = history["runs"][RunStatus.SUCCESS].pipeline_id

    with planned_queries("run_period_stats") as found:
        period_summary(since=now - timedelta(days=1))
        period_summary(since=now - timedelta(days=30))
        runs_per_period(since=now - timedelta(days=1))
        failing_pipelines(since=now - timedelta(days=7))
        period_stats_prune(now=now)
    with planned_queries("run_period_stats") as per_pipeline:
        period_summary(since=now - timedelta(days=1), pipeline=etl)

    assert_indexed(found, "run_period_stats")
    assert all(p.served_by("run_period_stats_key", table="run_period_stats") for p in found)
    assert_indexed(per_pipeline, "run_period_stats")
    assert per_pipeline[0].served_by("run_period_stats_pipeline_idx", table="run_period_stats")


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"status__exact": "FAILED"}, "run_status_queued_idx"),
        ({"pipeline__pipeline_name__exact": "etl"}, "run_pipeline_queued_idx"),
        ({"triggered_by": "webhook"}, "run_trigger_queued_idx"),
    ],
)
def test_a_filter_sorted_by_another_column_sorts_only_the_newest_matches(
    history, monkeypatch, params, index
):
    from runs_app.admin_run_list import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 20)  # fewer matches than that: sorted whole
    monkeypatch.setattr(PipelineRunAdmin, "list_per_page", 5)
    found = admin_page(RUNS, {**params, "o": order_param("duration_column", True)}, sorts=True)

    boundary = the_query(found, "OFFSET 19")  # the queue time of the 20th newest match…
    page = the_query(found, "LIMIT 5")  # …and the matches since then, sorted
    assert boundary.served_by(index)
    assert '"queued_at" >=' in page.sql
    assert page.served_by(index, sorts=True)
