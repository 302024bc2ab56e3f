"""A finished run whose log file is gone says "log file missing" (admin and API) instead of
looking like a run that printed nothing; a live run whose file does not exist yet, and a run
that never started, do not."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role
from runs_app.models import RunStatus
from tests import helpers_admin, helpers_api

pytestmark = pytest.mark.django_db


def run_page(run) -> str:
    client = helpers_admin.client_for(Role.READONLY)
    response = client.get(reverse("admin:runs_app_pipelinerun_change", args=[run.pk]))
    assert response.status_code == 200
    return response.text


def gone(run) -> None:
    Path(run.log_file).unlink()


def test_the_run_page_says_the_log_file_is_missing():
    run = helpers_admin.make_run(helpers_admin.make_pipeline(), RunStatus.SUCCESS, log="hi\n")
    gone(run)

    text = run_page(run)

    assert "Log file missing" in text and run.log_file in text
    assert "No log output was recorded" not in text


def test_a_run_without_a_log_file_still_says_it_recorded_nothing():
    run = helpers_admin.make_run(helpers_admin.make_pipeline(), RunStatus.CANCELLED)

    text = run_page(run)

    assert "No log output was recorded" in text and "Log file missing" not in text


def test_a_running_run_whose_file_is_not_created_yet_is_not_missing(settings):
    run = helpers_admin.make_run(
        helpers_admin.make_pipeline(),
        RunStatus.RUNNING,
        started_at=timezone.now(),
        log_file=str(Path(settings.LOGS_DIR) / "not-yet.log"),
    )

    assert "Log file missing" not in run_page(run)
    client = helpers_api.client_for("READONLY")
    response = client.get(f"/api/runs/{run.id}/logs/")
    assert response.status_code == 200 and response.content == b""


def test_the_admin_log_endpoint_and_download_say_missing():
    run = helpers_admin.make_run(helpers_admin.make_pipeline(), RunStatus.FAILED, log="x\n")
    gone(run)
    client = helpers_admin.client_for(Role.READONLY)

    tail = client.get(reverse("admin:runs_app_pipelinerun_log", args=[run.pk]))
    download = client.get(reverse("admin:runs_app_pipelinerun_log_download", args=[run.pk]))

    assert tail.json()["log_missing"] is True and tail.json()["lines"] == []
    assert download.status_code == 404


@pytest.mark.parametrize("path", ["logs/", "logs/stream/"])
def test_the_api_answers_log_missing_for_the_log_and_its_stream(path):
    pipeline = helpers_api.make_pipeline()
    run = helpers_api.make_run(pipeline, RunStatus.SUCCESS, log=b"done\n")
    run.refresh_from_db()
    gone(run)

    response = helpers_api.client_for("READONLY").get(f"/api/runs/{run.id}/{path}")

    body = helpers_api.assert_error(response, 404, "log_missing")
    assert "log file missing" in body["detail"]


def test_the_run_page_says_the_metrics_file_is_missing():
    run = helpers_admin.make_run(
        helpers_admin.make_pipeline(), RunStatus.SUCCESS, metrics=[{"cpu_percent": 1.0}]
    )
    Path(run.metrics_file).unlink()

    assert "Metrics file missing" in run_page(run)
