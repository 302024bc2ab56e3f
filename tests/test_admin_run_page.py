"""The run page's live panels (`<run>/panels/`): heading, status, buttons, facts and CPU/RAM
charts as the run goes on; Cancel from the page as JSON; the metrics download; log lines as
elements with their source; query counts that do not grow with the run's children or samples."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role
from runs_app.logs import NOTE, STDERR, STDOUT, format_timestamp, log_line
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_admin import client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db


def url(name: str, run: PipelineRun) -> str:
    return reverse(f"admin:runs_app_pipelinerun_{name}", args=[run.pk])


def samples(start: datetime, count: int, *, cpu: float = 40.0, memory: int = 100) -> list[dict]:
    return [
        {
            "ts": format_timestamp(start + timedelta(seconds=2 * i)),
            "cpu_percent": cpu + i,
            "memory_bytes": (memory + i) * 1024 * 1024,
        }
        for i in range(count)
    ]


def running_run(**fields) -> PipelineRun:
    started = timezone.now() - timedelta(seconds=30)
    pipeline = fields.pop("pipeline", None) or make_pipeline(
        "busy", {"mem_hard_limit": "512m", "cpu_hard_limit": 1.5}
    )
    return make_run(
        pipeline,
        RunStatus.RUNNING,
        log=f"{format_timestamp(started)} working\n",
        metrics=samples(started, 12),
        started_at=started,
        queued_at=started - timedelta(seconds=2),
        engine_id="engine-1",
        **fields,
    )


def test_the_panels_follow_a_run_from_running_to_its_end() -> None:
    run = running_run()
    client = client_for(Role.WRITE)

    live = client.get(url("panels", run)).json()

    assert live["status"] == "RUNNING" and live["terminal"] is False
    head, facts = live["panels"]["head"], live["panels"]["facts"]
    assert 'data-status="RUNNING"' in head and 'id="ff-cancel-run"' in head
    assert 'id="ff-retry-run"' not in head
    assert re.search(r'id="ff-fact-exit-code"[^>]*>—<', facts)
    assert re.search(r'id="ff-fact-finished">—<', facts)
    assert "so far" in facts and "after 2 s in the queue" in facts

    finished = run.started_at + timedelta(seconds=42)
    PipelineRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, exit_code=3, finished_at=finished, error_message="exited with 3"
    )
    done = client.get(url("panels", run)).json()

    assert done["status"] == "FAILED" and done["terminal"] is True
    head, facts = done["panels"]["head"], done["panels"]["facts"]
    assert 'data-status="FAILED"' in head
    assert 'id="ff-cancel-run"' not in head and 'id="ff-retry-run"' in head
    assert re.search(r'id="ff-fact-exit-code"[^>]*>3<', facts)
    assert finished.astimezone(UTC).strftime("%H:%M:%S") in facts
    assert "42 s" in facts and "exited with 3" in facts


def test_readonly_users_get_no_buttons_and_cannot_cancel() -> None:
    run = running_run()
    client = client_for(Role.READONLY)

    head = client.get(url("panels", run)).json()["panels"]["head"]
    refused = client.post(url("cancel", run), HTTP_ACCEPT="application/json")

    assert "ff-cancel-run" not in head and "ff-retry-run" not in head
    assert refused.status_code == 403
    assert PipelineRun.objects.get(pk=run.pk).cancel_requested_at is None


def test_the_charts_have_axes_units_and_the_limits_drawn() -> None:
    run = running_run()

    resources = client_for(Role.READONLY).get(url("panels", run)).json()["panels"]["resources"]

    cpu, memory = re.findall(r"<svg .*?</svg>", resources, re.S)
    assert ">100 %<" in cpu and ">0 %<" in cpu  # one busy core is the top, whatever the use
    assert ">limit 1.5 CPU<" in cpu and "ff-chart-limit" in cpu
    assert ">0:10<" in cpu and ">0:20<" in cpu  # elapsed time on the x axis
    assert "<polyline" in cpu and "<polyline" in memory
    assert ">limit 512 MiB<" in memory and " MiB<" in memory
    assert "12 sample(s)" in resources and "avg 45.5%" in resources


def test_a_run_without_limits_or_samples_says_so() -> None:
    run = make_run(make_pipeline("plain"), RunStatus.SUCCESS)

    resources = client_for(Role.READONLY).get(url("panels", run)).json()["panels"]["resources"]

    assert "No metrics recorded" in resources


def test_a_live_run_without_samples_yet_draws_empty_axes() -> None:
    run = make_run(make_pipeline("plain"), RunStatus.RUNNING, started_at=timezone.now())

    resources = client_for(Role.READONLY).get(url("panels", run)).json()["panels"]["resources"]

    assert "Waiting for samples" in resources and ">100 %<" in resources
    assert "no limit line" in resources


def test_cancel_from_the_page_answers_json() -> None:
    run = running_run()
    client = client_for(Role.WRITE)

    response = client.post(url("cancel", run), HTTP_ACCEPT="application/json")
    again = client.post(
        url("cancel", make_run(run.pipeline, RunStatus.SUCCESS)), HTTP_ACCEPT="application/json"
    )

    assert response.status_code == 200
    assert response.json()["status"] == "RUNNING"
    assert "engine stops it" in response.json()["message"]
    assert PipelineRun.objects.get(pk=run.pk).cancel_requested_at is not None
    assert again.status_code == 409 and "error" in again.json()
    head = client.get(url("panels", run)).json()["panels"]["head"]
    assert "cancel requested" in head and "Stopping…" in head


def test_the_metrics_download_is_the_samples_and_a_run_without_them_is_404() -> None:
    run = running_run()
    client = client_for(Role.READONLY)

    response = client.get(url("metrics_download", run))
    missing = client.get(url("metrics_download", make_run(run.pipeline, RunStatus.PENDING)))

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    body = response.content.decode()
    assert body.count("\n") == 12 and '"cpu_percent": 40.0' in body
    assert missing.status_code == 404


def test_log_lines_are_elements_with_their_time_and_source_marked() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    run = make_run(
        make_pipeline(),
        RunStatus.SUCCESS,
        log=(
            log_line(STDOUT, at, "hello <i>there</i>")
            + log_line(STDERR, at, "a warning")
            + log_line(NOTE, at, "run finished")
            # A pipeline printing what looks like a note is still stdout.
            + log_line(STDOUT, at, "[fastflow] forged")
        ).decode(),
    )

    text = client_for(Role.READONLY).get(url("change", run)).text

    assert '<span class="ff-log-time" title="2030-01-02T03:04:05.678Z">03:04:05.678</span>' in text
    assert "hello &lt;i&gt;there&lt;/i&gt;" in text
    lines = re.findall(r'<span class="ff-log-line ff-log-(\w+)" data-source="\w+">', text)
    assert lines == ["stdout", "stderr", "note", "stdout"]
    assert text.count('<span class="ff-log-badge">fastflow</span>') == 1
    assert 'id="ff-log-find"' in text and 'id="ff-log-first-error"' in text


def test_the_page_and_its_panels_cost_the_same_queries_with_more_children_and_samples() -> None:
    run = running_run()
    client = client_for(Role.WRITE)
    client.get(url("change", run))

    with CaptureQueriesContext(connection) as page_few:
        client.get(url("change", run))
    with CaptureQueriesContext(connection) as panels_few:
        client.get(url("panels", run))
    for _ in range(10):
        make_run(run.pipeline, RunStatus.PENDING, parent_run=run)
    with open(run.metrics_file, "a") as fh:
        fh.writelines('{"ts": "2030-01-01T00:00:00.000Z", "cpu_percent": 1}\n' for _ in range(200))
    with CaptureQueriesContext(connection) as page_many:
        client.get(url("change", run))
    with CaptureQueriesContext(connection) as panels_many:
        client.get(url("panels", run))

    assert len(page_many) == len(page_few)
    assert len(panels_many) == len(panels_few)
