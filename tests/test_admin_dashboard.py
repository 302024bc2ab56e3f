"""The admin index is the dashboard: running runs, the queue and its oldest runnable run,
engines with their heartbeat, the next schedule fires; every number links to the list behind
it; the header has no "View site" but the API docs; a fixed number of queries."""

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
    client.get(INDEX)

    with CaptureQueriesContext(connection) as few:
        assert client.get(INDEX).status_code == 200
    for index in range(20):
        other = make_pipeline(f"p{index}")
        make_run(other, RunStatus.RUNNING, started_at=timezone.now(), engine_id=f"e{index % 3}")
        make_run(other, RunStatus.PENDING)
        make_run(other, RunStatus.FAILED)
        ScheduledJob.objects.create(pipeline=other, trigger_type="INTERVAL", trigger_value="300")
    for index in range(3):
        EngineInstance.objects.create(id=f"e{index}", hostname="h", pid=index, executor="local")
    with CaptureQueriesContext(connection) as many:
        assert client.get(INDEX).status_code == 200

    assert len(many) == len(few)
    assert PipelineRun.objects.count() > 60
