"""The admin index is the dashboard: running runs, the queue and its oldest runnable run,
engines with their heartbeat, the next schedule fires, and over a window the runs per period by
status, success rate, p50/p95 and failing pipelines (from the period statistics, never the run
history); every number links to the list behind it; the header has no "View site" but the API
docs; a fixed number of queries."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role
from runs_app.models import EngineInstance, PipelineRun, RunStatus, ScheduledJob
from runs_app.outcome import Outcome
from runs_app.services import run_cancel, run_finish
from tests.helpers_admin import client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")


def card(text: str, card_id: str) -> str:
    start = text.index(f'id="{card_id}"')
    return text[text.rindex("<a", 0, start) : text.index("</a>", start)]


def card_link(text: str, card_id: str) -> str:
    return unescape(re.search(r'href="([^"]+)"', card(text, card_id)).group(1))


def test_the_live_numbers_link_to_the_lists_behind_them() -> None:
    pipeline = make_pipeline("etl")
    now = timezone.now()
    running = make_run(pipeline, RunStatus.RUNNING, started_at=now - timedelta(minutes=3))
    make_run(pipeline, RunStatus.PENDING, queued_at=now - timedelta(minutes=7))
    make_run(pipeline, RunStatus.PENDING, queued_at=now - timedelta(minutes=1))
    make_run(pipeline, RunStatus.PENDING, not_before=now + timedelta(minutes=5))  # a retry
    make_run(pipeline, RunStatus.SUCCESS)
    client = client_for(Role.READONLY)

    text = client.get(INDEX).text

    assert ">1<" in card(text, "ff-kpi-running")
    queue = card(text, "ff-kpi-queue")
    assert ">2<" in queue and "oldest waiting 7 min" in queue and "1 delayed" in queue
    listed = client.get(card_link(text, "ff-kpi-running")).text
    assert str(running.pk)[:8] in listed
    assert listed.count('data-status="RUNNING"') >= 1 and 'data-status="SUCCESS"' not in listed
    pending = client.get(card_link(text, "ff-kpi-queue")).text
    assert pending.count('class="ff-status" data-ff-run-status data-status="PENDING"') == 3
    assert str(running.pk)[:8] in text  # the running table links each run
    assert reverse("admin:runs_app_pipelinerun_change", args=[running.pk]) in text


def finished(pipeline, *, seconds: float, exit_code: int = 0) -> PipelineRun:  # noqa: ANN001
    """A run that ends now through the service, so the period statistics count it."""
    started = timezone.now() - timedelta(seconds=seconds)
    run = make_run(pipeline, RunStatus.RUNNING, queued_at=started, started_at=started)
    return run_finish(run=run, outcome=Outcome(exit_code=exit_code))


def listed_ids(client, url: str) -> list[str]:  # noqa: ANN001
    text = client.get(url).text
    return re.findall(r'<th class="field-short_id"><a href="[^"]+">([0-9a-f]{8})</a>', text)


def short(run: PipelineRun) -> str:
    return str(run.pk)[:8]


@pytest.mark.parametrize("role", [Role.WRITE, Role.READONLY])  # with and without actions
def test_the_window_numbers_come_from_the_statistics_and_link_to_their_runs(role) -> None:
    etl, other = make_pipeline("etl"), make_pipeline("other")
    quick, medium, slow = (finished(etl, seconds=s) for s in (10, 20, 200))
    failed = finished(etl, seconds=5, exit_code=1)
    cancelled = run_cancel(run=make_run(other))
    # Not counted (it never ended through the engine), and queued before the window.
    make_run(etl, RunStatus.SUCCESS, queued_at=timezone.now() - timedelta(days=3))
    client = client_for(role)

    text = client.get(INDEX, {"window": "24h"}).text

    assert ">5<" in card(text, "ff-kpi-runs") and "1 cancelled" in card(text, "ff-kpi-runs")
    assert "75.0 %" in card(text, "ff-kpi-success") and "1 failed" in card(text, "ff-kpi-success")
    assert "p95" in card(text, "ff-kpi-duration")
    ended = {short(r) for r in (quick, medium, slow, failed, cancelled)}
    assert set(listed_ids(client, card_link(text, "ff-kpi-runs"))) == ended
    assert listed_ids(client, card_link(text, "ff-kpi-success")) == [short(failed)]
    assert listed_ids(client, card_link(text, "ff-kpi-duration"))[:3] == [
        short(slow),
        short(medium),
        short(quick),
    ]
    failing = text[text.index('id="ff-failing"') :]
    failing = failing[: failing.index("</section>")]
    assert ">etl</a>" in failing and "other" not in failing and "75 %" in failing
    links = [unescape(u) for u in re.findall(r'href="([^"]+)"', failing)]
    assert listed_ids(client, links[1]) == [short(failed)]  # the failed count
    assert len(listed_ids(client, links[2])) == 4  # the pipeline's runs in the window
    # The chart: a segment per status of the hour, each linked to its runs.
    chart = text[text.index('id="ff-runs-chart"') :]
    chart = chart[: chart.index("</section>")]
    by_status: dict[str, set[str]] = {}
    for url, status in re.findall(
        r'<a href="([^"]+)"><rect class="ff-chart-bar ff-s-(\w+)"', chart
    ):
        by_status.setdefault(status, set()).update(listed_ids(client, unescape(url)))
    assert by_status == {
        "SUCCESS": {short(quick), short(medium), short(slow)},
        "FAILED": {short(failed)},
        "CANCELLED": {short(cancelled)},
    }

    # The numbers are the statistics': deleting the run rows (retention) leaves them.
    PipelineRun.objects.all().delete()
    again = client.get(INDEX, {"window": "24h"}).text
    assert ">5<" in card(again, "ff-kpi-runs") and "75.0 %" in card(again, "ff-kpi-success")


def test_a_window_without_runs_says_so() -> None:
    text = client_for(Role.READONLY).get(INDEX, {"window": "7d"}).text

    assert ">0<" in card(text, "ff-kpi-runs") and "—" in card(text, "ff-kpi-success")
    assert "No failed runs in this window." in text
    assert 'href="?window=7d" aria-current="true"' in text
    assert "Runs per day" in text


def test_engines_show_their_heartbeat_and_stale_ones_are_marked(settings) -> None:
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 30
    now = timezone.now()
    EngineInstance.objects.create(id="a", hostname="host-a", pid=1, executor="docker")
    EngineInstance.objects.create(
        id="b", hostname="host-b", pid=2, executor="local", heartbeat_at=now - timedelta(minutes=5)
    )
    make_run(make_pipeline(), RunStatus.RUNNING, engine_id="a", started_at=now)

    text = client_for(Role.ADMIN).get(INDEX).text

    engines = card(text, "ff-kpi-engines")
    assert "1<span" in engines and "/ 2" in engines
    assert reverse("admin:runs_app_engineinstance_changelist") in engines
    table = text[text.index('id="ff-engines"') :]
    assert "host-a · pid 1" in table and "host-b · pid 2" in table
    assert table.count(">stale<") == 1


def test_no_engine_is_said_plainly() -> None:
    text = client_for(Role.READONLY).get(INDEX).text

    assert "no engine is running" in text and 'data-tone="bad"' in card(text, "ff-kpi-engines")
    assert "python manage.py runscheduler" in text


def test_the_next_fires_are_the_soonest_first_and_skip_disabled_schedules() -> None:
    pipeline = make_pipeline("etl")
    yearly = ScheduledJob.objects.create(
        pipeline=pipeline, trigger_type="CRON", trigger_value="0 0 1 1 *"
    )
    ScheduledJob.objects.create(pipeline=pipeline, trigger_type="INTERVAL", trigger_value="60")
    ScheduledJob.objects.create(
        pipeline=pipeline, trigger_type="CRON", trigger_value="*/5 * * * *", enabled=False
    )

    text = client_for(Role.READONLY).get(INDEX).text

    section = text[text.index('id="ff-next-fires"') :]
    section = section[: section.index("</section>")]
    assert section.index("interval 60") < section.index("cron 0 0 1 1 *")
    assert "*/5" not in section
    assert reverse("admin:runs_app_scheduledjob_change", args=[yearly.pk]) in section


def test_the_header_has_api_docs_and_no_view_site_and_hides_what_a_role_cannot_see() -> None:
    readonly = client_for(Role.READONLY).get(INDEX).text
    admin = client_for(Role.ADMIN).get(INDEX).text

    assert "View site" not in readonly and "View site" not in admin
    assert f'href="{reverse("api-docs")}"' in readonly
    nav = readonly[readonly.index('class="ff-nav"') : readonly.index("</nav>")]
    assert "Runs" in nav and "Pipelines" in nav and "Secrets" not in nav
    assert "Secrets" in admin[admin.index('class="ff-nav"') : admin.index("</nav>")]
    sections = admin[admin.index('id="ff-sections"') :]
    assert ">API tokens</a>" in sections and "Api tokens" not in sections
    assert 'aria-current="page">Dashboard' in readonly


def test_an_unknown_window_falls_back_to_the_default() -> None:
    response = client_for(Role.READONLY).get(INDEX, {"window": "<script>"})

    assert response.status_code == 200
    assert 'href="?window=24h" aria-current="true"' in response.text
    assert "<script>" not in response.text.split("</head>", 1)[1].split("<script", 1)[0]


def test_the_dashboard_query_count_does_not_grow_with_runs_engines_or_schedules() -> None:
    pipeline = make_pipeline("etl")
    client = client_for(Role.ADMIN)
    make_run(pipeline, RunStatus.RUNNING, started_at=timezone.now())
    finished(pipeline, seconds=3)
    client.get(INDEX)

    with CaptureQueriesContext(connection) as few:
        assert client.get(INDEX).status_code == 200
    for index in range(20):
        other = make_pipeline(f"p{index}")
        make_run(other, RunStatus.RUNNING, started_at=timezone.now(), engine_id=f"e{index % 3}")
        make_run(other, RunStatus.PENDING)
        finished(other, seconds=index, exit_code=index % 2)
        ScheduledJob.objects.create(pipeline=other, trigger_type="INTERVAL", trigger_value="300")
    for index in range(3):
        EngineInstance.objects.create(id=f"e{index}", hostname="h", pid=index, executor="local")
    with CaptureQueriesContext(connection) as many:
        assert client.get(INDEX).status_code == 200

    assert len(many) == len(few)
    assert PipelineRun.objects.count() > 60
    # The run table is read for the live numbers only (by status: the queue and running
    # runs); everything about the window comes from run_period_stats.
    on_runs = [q["sql"] for q in many.captured_queries if '"pipeline_runs"' in q["sql"]]
    assert on_runs and all('"pipeline_runs"."status"' in sql for sql in on_runs), on_runs
