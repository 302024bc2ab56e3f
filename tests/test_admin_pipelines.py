"""The pipeline admin: list columns without N+1 queries, problems shown, Sync, enable/disable."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts_app.models import User
from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.models import RunStatus
from tests.helpers_pipelines import full_pipeline_json, make_run

CHANGELIST = "admin:pipelines_app_pipeline_changelist"
SYNC = "admin:pipelines_app_pipeline_sync"

pytestmark = pytest.mark.django_db


def login(client, role: str) -> User:
    user = User.objects.create_user(username=f"{role.lower()}_user", role=role)
    client.force_login(user)
    return user


def change_url(name: str) -> str:
    return reverse("admin:pipelines_app_pipeline_change", args=[name])


def make_pipelines(make_pipeline_dir, count: int, *, start: int = 0) -> None:
    for index in range(start, start + count):
        make_pipeline_dir(f"p{index:03d}", pipeline_json={"description": f"pipeline {index}"})
    pipelines_sync()
    for pipeline in Pipeline.objects.filter(total_runs=0):
        make_run(pipeline, RunStatus.SUCCESS, minutes_ago=2)
        make_run(pipeline, RunStatus.FAILED, minutes_ago=1)
    Pipeline.objects.update(total_runs=2, successful_runs=1, failed_runs=1)


# --- the changelist -----------------------------------------------------------------------------


def test_the_changelist_shows_description_tags_status_and_success_rate(
    client, make_pipeline_dir
) -> None:
    make_pipeline_dir("etl", pipeline_json=full_pipeline_json())
    make_pipeline_dir("broken", pipeline_json={"timeout": "soon"})
    make_pipeline_dir("idle")
    pipelines_sync()
    etl = Pipeline.objects.get(pk="etl")
    make_run(etl, RunStatus.FAILED, minutes_ago=10)
    make_run(etl, RunStatus.SUCCESS, minutes_ago=1)
    Pipeline.objects.filter(pk="etl").update(total_runs=4, successful_runs=3, failed_runs=1)
    login(client, "ADMIN")

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Nightly export" in html
    assert "etl, nightly" in html
    assert "75 %" in html
    assert "SUCCESS" in html  # the latest run, not the older FAILED one
    assert html.count("FAILED") == 0
    assert "color:#dc3545" in html  # the red discovery error column
    assert "pipeline.json: key &#x27;timeout&#x27;: expected a whole number" in html
    rows = {row.pk: row for row in response.context["cl"].result_list}
    assert rows["etl"].last_run_status == RunStatus.SUCCESS
    assert rows["etl"].success_rate == pytest.approx(75.0)
    assert rows["idle"].success_rate is None
    assert rows["idle"].last_run_status is None


def test_the_last_run_column_comes_from_runs_right_before_the_success_rate(
    client, make_pipeline_dir
) -> None:
    make_pipeline_dir("etl")
    pipelines_sync()
    login(client, "ADMIN")

    listing = client.get(reverse(CHANGELIST))
    page = client.get(change_url("etl"))

    columns = list(listing.context["cl"].list_display)
    at = columns.index("last_status_column")
    assert columns[at - 1 : at + 2] == ["enabled", "last_status_column", "success_rate_column"]
    statistics = dict(page.context["adminform"].fieldsets)["Statistics"]["fields"]
    assert statistics[:2] == ("last_status_column", "success_rate_column")
    assert "Last run" in page.content.decode()


def test_the_changelist_query_count_does_not_grow_with_pipelines(
    client, make_pipeline_dir, django_assert_max_num_queries
) -> None:
    make_pipelines(make_pipeline_dir, 2)
    login(client, "ADMIN")
    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse(CHANGELIST)).status_code == 200

    make_pipelines(make_pipeline_dir, 20, start=2)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(reverse(CHANGELIST))
    assert response.context["cl"].result_count == 22


def test_search_finds_descriptions_and_tags(client, make_pipeline_dir) -> None:
    make_pipeline_dir("etl", pipeline_json={"description": "Loads invoices", "tags": ["finance"]})
    make_pipeline_dir("other", pipeline_json={"description": "Something else", "tags": ["ops"]})
    pipelines_sync()
    login(client, "READONLY")

    by_description = client.get(reverse(CHANGELIST), {"q": "invoices"})
    by_tag = client.get(reverse(CHANGELIST), {"q": "finance"})

    assert [p.pk for p in by_description.context["cl"].result_list] == ["etl"]
    assert [p.pk for p in by_tag.context["cl"].result_list] == ["etl"]


@pytest.mark.parametrize(
    ("state", "expected"),
    [("ready", ["good"]), ("disabled", ["off"]), ("broken", ["bad"]), ("missing", ["gone"])],
)
def test_the_state_filter(client, make_pipeline_dir, state: str, expected: list[str]) -> None:
    make_pipeline_dir("good")
    make_pipeline_dir("off", pipeline_json={"enabled": False})
    make_pipeline_dir("bad", pipeline_json="{")
    gone = make_pipeline_dir("gone")
    pipelines_sync()
    (gone / "main.py").unlink()
    pipelines_sync()
    login(client, "READONLY")

    response = client.get(reverse(CHANGELIST), {"state": state})

    assert [p.pk for p in response.context["cl"].result_list] == expected


# --- the change form ----------------------------------------------------------------------------


def test_a_broken_pipeline_shows_its_error_at_the_top_of_the_form(
    client, make_pipeline_dir
) -> None:
    make_pipeline_dir("broken", pipeline_json={"timeout": "soon", "colour": "red"})
    pipelines_sync()
    login(client, "ADMIN")

    response = client.get(change_url("broken"))

    assert response.status_code == 200
    assert response.context["adminform"].fieldsets[0][0] == "Problems"
    html = response.content.decode()
    assert "cannot run until its configuration is fixed" in html
    assert "expected a whole number, got string" in html


def test_the_form_shows_schedules_and_masks_webhook_keys(client, make_pipeline_dir) -> None:
    make_pipeline_dir("etl", pipeline_json=full_pipeline_json())
    pipelines_sync()
    login(client, "READONLY")

    response = client.get(change_url("etl"))

    html = response.content.decode()
    # Valid, but with warnings (the downstream pipeline 'report' does not exist): shown on top.
    assert response.context["adminform"].fieldsets[0][0] == "Problems"
    assert "no pipeline named &#x27;report&#x27; exists" in html
    assert "cron 0 2 * * * (disabled)" in html
    assert "every 3600 s" in html
    assert "pipeline-level-webhook-key-0001" not in html
    assert "nightly-run-config-webhook-key" not in html
    assert "gAAAAABciphertext" not in html
    assert "&quot;webhook_key&quot;: &quot;***&quot;" in html


def test_saving_the_form_changes_only_enabled(client, make_pipeline_dir) -> None:
    make_pipeline_dir("etl")
    pipelines_sync()
    login(client, "WRITE")
    # A run finishes between loading the form and saving it.
    Pipeline.objects.filter(pk="etl").update(total_runs=9, successful_runs=9)

    response = client.post(change_url("etl"), {"enabled": ""})

    assert response.status_code == 302
    etl = Pipeline.objects.get(pk="etl")
    assert (etl.enabled, etl.total_runs, etl.successful_runs) == (False, 9, 9)


def test_readonly_users_cannot_change_a_pipeline(client, make_pipeline_dir) -> None:
    make_pipeline_dir("etl")
    pipelines_sync()
    login(client, "READONLY")

    assert client.get(change_url("etl")).status_code == 200
    response = client.post(change_url("etl"), {"enabled": ""})

    assert response.status_code == 403
    assert Pipeline.objects.get(pk="etl").enabled is True


def test_pipelines_cannot_be_added_or_deleted_in_the_admin(client, make_pipeline_dir) -> None:
    make_pipeline_dir("etl")
    pipelines_sync()
    login(client, "ADMIN")

    assert client.get(reverse("admin:pipelines_app_pipeline_add")).status_code == 403
    assert (
        client.get(reverse("admin:pipelines_app_pipeline_delete", args=["etl"])).status_code == 403
    )
    actions = client.get(reverse(CHANGELIST)).context["action_form"].fields["action"].choices
    assert "delete_selected" not in [name for name, _ in actions]


# --- Sync ---------------------------------------------------------------------------------------


def test_the_sync_button_runs_discovery(client, make_pipeline_dir) -> None:
    make_pipeline_dir("fresh")
    make_pipeline_dir("bad", pipeline_json="{")
    login(client, "WRITE")

    page = client.get(reverse(CHANGELIST)).content.decode()
    assert reverse(SYNC) in page and "Sync pipelines" in page

    response = client.post(reverse(SYNC), follow=True)

    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)
    assert set(Pipeline.objects.values_list("pipeline_name", flat=True)) == {"fresh", "bad"}
    messages = [str(m) for m in response.context["messages"]]
    assert "Pipelines synced: 2 pipeline(s) found, 2 new, 1 with errors." in messages
    assert "Pipelines with configuration errors: bad." in messages


def test_sync_is_post_only(client) -> None:
    login(client, "ADMIN")
    assert client.get(reverse(SYNC)).status_code == 405
    assert not Pipeline.objects.exists()


def test_readonly_users_cannot_sync(client, make_pipeline_dir) -> None:
    make_pipeline_dir("fresh")
    login(client, "READONLY")

    assert reverse(SYNC) not in client.get(reverse(CHANGELIST)).content.decode()
    assert client.post(reverse(SYNC)).status_code == 403
    assert not Pipeline.objects.exists()


def test_sync_reports_an_unusable_directory(client, settings, tmp_path) -> None:
    settings.PIPELINES_DIR = tmp_path / "nowhere"
    login(client, "ADMIN")

    response = client.post(reverse(SYNC), follow=True)

    messages = [str(m) for m in response.context["messages"]]
    assert messages == [f"Sync failed: pipelines directory {tmp_path / 'nowhere'} does not exist"]


def test_sync_requires_login(client) -> None:
    response = client.post(reverse(SYNC))
    assert response.status_code == 302
    assert "login" in response["Location"]


# --- Enable / Disable ---------------------------------------------------------------------------


def test_the_disable_and_enable_actions(client, make_pipeline_dir) -> None:
    make_pipeline_dir("a")
    make_pipeline_dir("b")
    pipelines_sync()
    Pipeline.objects.update(total_runs=3)
    login(client, "WRITE")

    response = client.post(
        reverse(CHANGELIST), {"action": "disable_pipelines", "_selected_action": ["a", "b"]}
    )
    assert response.status_code == 302
    assert list(Pipeline.objects.values_list("enabled", "total_runs")) == [(False, 3)] * 2

    client.post(reverse(CHANGELIST), {"action": "enable_pipelines", "_selected_action": ["a"]})
    assert dict(Pipeline.objects.values_list("pipeline_name", "enabled")) == {"a": True, "b": False}


def test_enabling_a_broken_pipeline_says_it_still_cannot_run(client, make_pipeline_dir) -> None:
    make_pipeline_dir("bad", pipeline_json={"enabled": False, "timeout": "x"})
    pipelines_sync()
    login(client, "ADMIN")

    response = client.post(
        reverse(CHANGELIST),
        {"action": "enable_pipelines", "_selected_action": ["bad"]},
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert "1 pipeline(s) enabled." in messages
    assert "Enabled but still not runnable (missing or broken): bad." in messages


def test_readonly_users_get_no_toggle_actions(client, make_pipeline_dir) -> None:
    make_pipeline_dir("a")
    pipelines_sync()
    login(client, "READONLY")

    response = client.get(reverse(CHANGELIST))

    assert response.context["action_form"] is None or not any(
        name in ("enable_pipelines", "disable_pipelines")
        for name, _ in response.context["action_form"].fields["action"].choices
    )
    client.post(reverse(CHANGELIST), {"action": "disable_pipelines", "_selected_action": ["a"]})
    assert Pipeline.objects.get(pk="a").enabled is True
