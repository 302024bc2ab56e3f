"""The run admin: list, run page (log, resources, links), log endpoint, Cancel and Retry."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts_app.models import Role
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_admin import client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:runs_app_pipelinerun_changelist")


def change_url(run: PipelineRun) -> str:
    return reverse("admin:runs_app_pipelinerun_change", args=[run.pk])


def log_url(run: PipelineRun) -> str:
    return reverse("admin:runs_app_pipelinerun_log", args=[run.pk])


@pytest.mark.parametrize("role", [Role.ADMIN, Role.WRITE, Role.READONLY])
def test_it_lists_runs_for_every_role(role: str) -> None:
    pipeline = make_pipeline()
    run = make_run(pipeline, RunStatus.FAILED, exit_code=3)

    response = client_for(role).get(CHANGELIST)

    assert response.status_code == 200
    assert str(run.pk)[:8] in response.text
    assert 'data-status="FAILED"' in response.text


@pytest.mark.parametrize(
    ("role", "may_act"), [(Role.ADMIN, True), (Role.WRITE, True), (Role.READONLY, False)]
)
def test_every_role_sees_the_run_page_and_its_log_but_only_writers_act(
    role: str, may_act: bool
) -> None:
    run = make_run(make_pipeline(), RunStatus.FAILED, log="boom\n")
    client = client_for(role)

    page = client.get(change_url(run))
    log = client.get(log_url(run))
    actions = client.get(CHANGELIST)

    assert page.status_code == 200 and "boom" in page.text
    assert log.status_code == 200 and [x["text"] for x in log.json()["lines"]] == ["boom"]
    assert ('id="ff-retry-run"' in page.text) is may_act
    assert ("retry_selected" in actions.text) is may_act


@pytest.mark.parametrize("role", [Role.ADMIN, Role.WRITE, Role.READONLY])
def test_the_run_page_is_read_only_for_every_role(role: str) -> None:
    run = make_run(make_pipeline(), RunStatus.FAILED, log="boom\n")
    client = client_for(role)

    page = client.get(change_url(run))
    posted = client.post(change_url(run), {"exit_code": "0"})

    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.text and 'name="_continue"' not in page.text
    assert posted.status_code == 403
    run.refresh_from_db()
    assert run.exit_code is None and run.status == RunStatus.FAILED
    # Deleting a finished run stays ADMIN's.
    assert ("deletelink" in page.text) is (role == Role.ADMIN)


def test_it_redirects_anonymous_users_to_login(client) -> None:
    run = make_run(make_pipeline())

    assert client.get(CHANGELIST).status_code == 302
    assert client.get(log_url(run)).status_code == 302


def test_it_shows_durations_from_the_annotation() -> None:
    started = timezone.now() - timedelta(minutes=5)
    run = make_run(
        make_pipeline(),
        RunStatus.SUCCESS,
        started_at=started,
        finished_at=started + timedelta(seconds=125),
        setup_duration=4.25,
    )

    response = client_for(Role.READONLY).get(CHANGELIST)

    assert str(run.pk)[:8] in response.text
    assert "2m 05s" in response.text
    assert "4.2s" in response.text


def test_it_searches_by_run_id_prefix_and_pipeline_name() -> None:
    wanted = make_run(make_pipeline("alpha"))
    other = make_run(make_pipeline("beta"))
    client = client_for(Role.READONLY)

    by_id = client.get(CHANGELIST, {"q": str(wanted.pk)[:8]})
    by_name = client.get(CHANGELIST, {"q": "beta"})

    assert str(wanted.pk)[:8] in by_id.text and str(other.pk)[:8] not in by_id.text
    assert str(other.pk)[:8] in by_name.text and str(wanted.pk)[:8] not in by_name.text


def test_it_filters_by_status_and_trigger() -> None:
    pipeline = make_pipeline()
    failed = make_run(pipeline, RunStatus.FAILED, triggered_by="webhook")
    ok = make_run(pipeline, RunStatus.SUCCESS, triggered_by="webhook")
    client = client_for(Role.READONLY)

    response = client.get(CHANGELIST, {"status__exact": "FAILED", "triggered_by": "webhook"})

    assert str(failed.pk)[:8] in response.text
    assert str(ok.pk)[:8] not in response.text


def test_the_changelist_query_count_does_not_grow_with_rows() -> None:
    pipeline = make_pipeline()
    client = client_for(Role.WRITE)
    for _ in range(2):
        make_run(pipeline, RunStatus.SUCCESS)
    client.get(CHANGELIST)  # warm caches (content types, session)

    with CaptureQueriesContext(connection) as few:
        assert client.get(CHANGELIST).status_code == 200
    for _ in range(25):
        make_run(make_pipeline(f"p{_}"), RunStatus.FAILED, parent_run=None)
    with CaptureQueriesContext(connection) as many:
        assert client.get(CHANGELIST).status_code == 200

    assert len(many) == len(few)


def test_the_run_page_shows_fields_escaped_log_and_resources() -> None:
    pipeline = make_pipeline()
    parent = make_run(pipeline, RunStatus.FAILED)
    run = make_run(
        pipeline,
        RunStatus.FAILED,
        log="[12:00:00] starting\n[12:00:01] <script>alert(1)</script>\n",
        metrics=[
            {"ts": "t1", "cpu_percent": 10.0, "memory_bytes": 50 * 1024 * 1024},
            {"ts": "t2", "cpu_percent": 30.0, "memory_bytes": 80 * 1024 * 1024},
        ],
        exit_code=2,
        error_message="exited with code 2",
        parameters={"DAY": "monday"},
        env_vars={"API_TOKEN": "***", "DAY": "monday"},
        parent_run=parent,
    )
    child = make_run(pipeline, RunStatus.PENDING, parent_run=run)

    response = client_for(Role.READONLY).get(change_url(run))

    assert response.status_code == 200
    text = response.text
    assert "[12:00:00] starting" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)</script>" not in text
    assert "exited with code 2" in text
    assert "avg 20.0% · max 30.0%" in text
    assert "80.0 MiB" in text
    assert "2 sample(s)" in text
    assert "<svg" in text
    assert "API_TOKEN" in text and "***" in text
    assert change_url(parent) in text and change_url(child) in text
    assert 'data-live="false"' in text


def test_a_live_run_page_polls_its_log() -> None:
    run = make_run(make_pipeline(), RunStatus.RUNNING, log="line 1\n", started_at=timezone.now())

    response = client_for(Role.READONLY).get(change_url(run))

    assert 'data-live="true"' in response.text
    assert f'data-log-url="{log_url(run)}"' in response.text
    assert 'data-offset="7"' in response.text
    assert "runs_app/run_log.js" in response.text


def test_the_log_endpoint_returns_text_from_an_offset_and_the_next_offset() -> None:
    run = make_run(make_pipeline(), RunStatus.RUNNING, log="first\nsecond\npartial")
    client = client_for(Role.READONLY)

    whole = client.get(log_url(run), {"offset": 0}).json()
    later = client.get(log_url(run), {"offset": 6}).json()

    assert whole == {
        "lines": [
            {"source": "unknown", "time": None, "text": "first"},
            {"source": "unknown", "time": None, "text": "second"},
        ],
        "offset": 13,
        "status": "RUNNING",
        "terminal": False,
        "cancel_requested": False,
        "log_missing": False,
    }
    assert [x["text"] for x in later["lines"]] == ["second"] and later["offset"] == 13


def test_the_log_endpoint_reports_a_terminal_status() -> None:
    run = make_run(make_pipeline(), RunStatus.SUCCESS, log="done\n")

    body = client_for(Role.READONLY).get(log_url(run), {"offset": 5}).json()

    assert body["lines"] == [] and body["offset"] == 5
    assert body["status"] == "SUCCESS" and body["terminal"] is True


def test_the_log_endpoint_rejects_a_bad_offset() -> None:
    run = make_run(make_pipeline(), RunStatus.RUNNING, log="x\n")

    response = client_for(Role.READONLY).get(log_url(run), {"offset": "-3"})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert "offset must be an integer from 0" in body["fields"]["offset"]


def test_the_log_endpoint_404s_for_an_unknown_run() -> None:
    response = client_for(Role.READONLY).get(
        reverse("admin:runs_app_pipelinerun_log", args=["00000000-0000-0000-0000-000000000000"])
    )

    assert response.status_code == 404


def test_it_downloads_the_full_log() -> None:
    run = make_run(make_pipeline(), RunStatus.SUCCESS, log="a\nb\n")

    response = client_for(Role.READONLY).get(
        reverse("admin:runs_app_pipelinerun_log_download", args=[run.pk])
    )

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"a\nb\n"
    assert f"run-{run.pk}.log" in response["Content-Disposition"]


def _action(client, action: str, *runs: PipelineRun):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(r.pk) for r in runs]},
        follow=True,
    )


def test_the_cancel_action_cancels_a_pending_run() -> None:
    run = make_run(make_pipeline(), RunStatus.PENDING)

    response = _action(client_for(Role.WRITE), "cancel_selected", run)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "1 run(s) cancelled." in response.text


def test_the_cancel_action_reports_a_finished_run_as_an_error_not_a_500() -> None:
    pipeline = make_pipeline()
    done = make_run(pipeline, RunStatus.SUCCESS)
    pending = make_run(pipeline, RunStatus.PENDING)

    response = _action(client_for(Role.WRITE), "cancel_selected", done, pending)

    assert response.status_code == 200
    assert "1 run(s) cancelled." in response.text
    assert "1 run(s) could not be cancelled" in response.text
    assert "already finished" in response.text
    done.refresh_from_db()
    assert done.status == RunStatus.SUCCESS


def test_the_cancel_action_on_a_running_run_requests_cancellation() -> None:
    run = make_run(make_pipeline(), RunStatus.RUNNING, started_at=timezone.now())

    _action(client_for(Role.WRITE), "cancel_selected", run)

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.cancel_requested_at is not None


def test_readonly_users_cannot_use_cancel_or_retry_actions() -> None:
    pipeline = make_pipeline()
    pending = make_run(pipeline, RunStatus.PENDING)
    failed = make_run(pipeline, RunStatus.FAILED)
    client = client_for(Role.READONLY)

    page = client.get(CHANGELIST)
    _action(client, "cancel_selected", pending)
    _action(client, "retry_selected", failed)

    assert "cancel_selected" not in page.text
    pending.refresh_from_db()
    assert pending.status == RunStatus.PENDING
    assert PipelineRun.objects.count() == 2


def test_the_retry_action_creates_a_linked_pending_run() -> None:
    failed = make_run(
        make_pipeline(), RunStatus.FAILED, parameters={"DAY": "monday"}, triggered_by="webhook"
    )

    response = _action(client_for(Role.WRITE), "retry_selected", failed)

    retry = PipelineRun.objects.get(parent_run=failed)
    assert retry.status == RunStatus.PENDING
    assert retry.parameters == {"DAY": "monday"}
    assert retry.triggered_by == "manual"
    assert "1 run(s) retried." in response.text


def test_the_retry_action_refuses_a_run_that_is_still_pending() -> None:
    pending = make_run(make_pipeline(), RunStatus.PENDING)

    response = _action(client_for(Role.WRITE), "retry_selected", pending)

    assert "could not be retried" in response.text
    assert PipelineRun.objects.count() == 1


def test_the_cancel_button_cancels_and_returns_to_the_run() -> None:
    run = make_run(make_pipeline(), RunStatus.PENDING)
    client = client_for(Role.WRITE)

    page = client.get(change_url(run))
    response = client.post(reverse("admin:runs_app_pipelinerun_cancel", args=[run.pk]))

    assert 'id="ff-cancel-run"' in page.text
    assert response.status_code == 302 and response["Location"] == change_url(run)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_the_retry_button_opens_the_new_run() -> None:
    run = make_run(make_pipeline(), RunStatus.FAILED)
    client = client_for(Role.WRITE)

    page = client.get(change_url(run))
    response = client.post(reverse("admin:runs_app_pipelinerun_retry", args=[run.pk]))

    retry = PipelineRun.objects.get(parent_run=run)
    assert 'id="ff-retry-run"' in page.text
    assert response["Location"] == change_url(retry)


def test_the_cancel_button_on_a_finished_run_shows_the_conflict() -> None:
    run = make_run(make_pipeline(), RunStatus.SUCCESS)

    response = client_for(Role.WRITE).post(
        reverse("admin:runs_app_pipelinerun_cancel", args=[run.pk]), follow=True
    )

    assert response.status_code == 200
    assert "Could not cancel run" in response.text


def test_readonly_users_get_no_buttons_and_a_403_on_post() -> None:
    pending = make_run(make_pipeline(), RunStatus.PENDING)
    failed = make_run(make_pipeline("other"), RunStatus.FAILED)
    client = client_for(Role.READONLY)

    page = client.get(change_url(pending))
    cancel = client.post(reverse("admin:runs_app_pipelinerun_cancel", args=[pending.pk]))
    retry = client.post(reverse("admin:runs_app_pipelinerun_retry", args=[failed.pk]))

    assert 'id="ff-cancel-run"' not in page.text
    assert cancel.status_code == 403 and retry.status_code == 403
    pending.refresh_from_db()
    assert pending.status == RunStatus.PENDING


def test_cancel_and_retry_need_post() -> None:
    run = make_run(make_pipeline(), RunStatus.PENDING)

    response = client_for(Role.WRITE).get(
        reverse("admin:runs_app_pipelinerun_cancel", args=[run.pk])
    )

    assert response.status_code == 405


def test_nobody_adds_runs_and_only_admins_delete_finished_ones() -> None:
    pipeline = make_pipeline()
    finished = make_run(pipeline, RunStatus.SUCCESS)
    running = make_run(pipeline, RunStatus.RUNNING)
    admin_client, write_client = client_for(Role.ADMIN), client_for(Role.WRITE)

    assert admin_client.get(reverse("admin:runs_app_pipelinerun_add")).status_code == 403
    delete = "admin:runs_app_pipelinerun_delete"
    assert write_client.get(reverse(delete, args=[finished.pk])).status_code == 403
    assert admin_client.get(reverse(delete, args=[running.pk])).status_code == 403
    assert (
        admin_client.post(reverse(delete, args=[finished.pk]), {"post": "yes"}).status_code == 302
    )
    assert not PipelineRun.objects.filter(pk=finished.pk).exists()


def test_deleting_a_run_in_the_admin_removes_its_log_and_metrics_files() -> None:
    pipeline = make_pipeline()
    single, *bulk = (
        make_run(pipeline, RunStatus.SUCCESS, log="done\n", metrics=[{"ts": 1}]) for _ in range(3)
    )
    files = [Path(f) for run in (single, *bulk) for f in (run.log_file, run.metrics_file)]
    client = client_for(Role.ADMIN)

    one = client.post(
        reverse("admin:runs_app_pipelinerun_delete", args=[single.pk]), {"post": "yes"}
    )
    many = client.post(
        CHANGELIST,
        {
            "action": "delete_selected",
            "_selected_action": [str(run.pk) for run in bulk],
            "post": "yes",
        },
    )

    assert one.status_code == many.status_code == 302
    assert not PipelineRun.objects.exists()
    assert [f for f in files if f.exists()] == []


def test_the_changelist_count_is_capped(monkeypatch) -> None:
    from runs_app.admin_runs import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 3)
    pipeline = make_pipeline()
    for _ in range(5):
        make_run(pipeline, RunStatus.SUCCESS)

    response = client_for(Role.READONLY).get(CHANGELIST)

    assert response.context["cl"].result_count == 3
