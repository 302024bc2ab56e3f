"""The schedule admin: validation on save, next fire times, pipeline.json rows read-only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from accounts_app.models import Role
from runs_app.errors import ScheduleReadOnly
from runs_app.models import EngineInstance, ScheduledJob, ScheduleSource, TriggerType
from runs_app.schedule_services import (
    scheduledjob_create,
    scheduledjob_delete,
    scheduledjob_next_fire_times,
    scheduledjob_update,
)
from tests.helpers_admin import client_for, make_pipeline

pytestmark = pytest.mark.django_db

ADD = reverse("admin:runs_app_scheduledjob_add")
CHANGELIST = reverse("admin:runs_app_scheduledjob_changelist")


def change_url(job: ScheduledJob) -> str:
    return reverse("admin:runs_app_scheduledjob_change", args=[job.pk])


def form_data(**overrides: object) -> dict[str, object]:
    data = {
        "pipeline": "demo",
        "trigger_type": TriggerType.CRON,
        "trigger_value": "0 12 * * *",
        "enabled": "on",
        "run_config_id": "",
        "start_date_0": "",
        "start_date_1": "",
        "end_date_0": "",
        "end_date_1": "",
    }
    data.update(overrides)
    return data


def test_it_creates_a_schedule_with_a_normalised_cron() -> None:
    make_pipeline("demo")

    response = client_for(Role.WRITE).post(ADD, form_data(trigger_value="  */15   *  * * 1-5 "))

    assert response.status_code == 302
    job = ScheduledJob.objects.get()
    assert job.trigger_value == "*/15 * * * 1-5"
    assert job.source == ScheduleSource.ADMIN
    assert job.enabled is True


def test_it_rejects_a_bad_cron_with_the_reason_and_keeps_the_input() -> None:
    make_pipeline("demo")

    response = client_for(Role.WRITE).post(ADD, form_data(trigger_value="0 12 *"))

    assert response.status_code == 200
    assert "Invalid cron expression" in response.text
    assert "expected 5 fields, got 3" in response.text
    assert 'value="0 12 *"' in response.text
    assert not ScheduledJob.objects.exists()


def test_it_rejects_an_out_of_range_cron_field() -> None:
    make_pipeline("demo")

    response = client_for(Role.WRITE).post(ADD, form_data(trigger_value="61 * * * *"))

    assert "minute field" in response.text
    assert not ScheduledJob.objects.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "whole number of seconds"), ("0", "positive number of seconds")],
)
def test_it_rejects_a_bad_interval(value: str, message: str) -> None:
    make_pipeline("demo")

    response = client_for(Role.WRITE).post(
        ADD, form_data(trigger_type=TriggerType.INTERVAL, trigger_value=value)
    )

    assert message in response.text
    assert not ScheduledJob.objects.exists()


def test_it_rejects_an_unknown_run_configuration() -> None:
    make_pipeline("demo", {"schedules": [{"id": "nightly", "schedule_cron": "0 2 * * *"}]})

    response = client_for(Role.WRITE).post(ADD, form_data(run_config_id="hourly"))

    assert "has no run configuration &#x27;hourly&#x27; (known: nightly)" in response.text
    assert not ScheduledJob.objects.exists()


def test_it_rejects_a_window_that_ends_before_it_starts() -> None:
    make_pipeline("demo")

    response = client_for(Role.WRITE).post(
        ADD,
        form_data(
            start_date_0="2030-01-02",
            start_date_1="00:00:00",
            end_date_0="2030-01-01",
            end_date_1="00:00:00",
        ),
    )

    assert "The end date must be after the start date." in response.text
    assert not ScheduledJob.objects.exists()


def test_the_change_page_shows_the_next_five_fire_times() -> None:
    job = scheduledjob_create(
        pipeline=make_pipeline("demo"), trigger_type=TriggerType.CRON, trigger_value="30 6 * * *"
    )

    response = client_for(Role.READONLY).get(change_url(job))

    assert response.status_code == 200
    assert response.text.count("06:30:00 UTC") == 5


def test_next_fire_times_use_standard_cron_weekdays() -> None:
    job = scheduledjob_create(
        pipeline=make_pipeline("demo"), trigger_type=TriggerType.CRON, trigger_value="0 9 * * 0"
    )
    wednesday = datetime(2030, 1, 2, tzinfo=UTC)

    times = scheduledjob_next_fire_times(job=job, count=2, now=wednesday)

    assert times == [datetime(2030, 1, 6, 9, tzinfo=UTC), datetime(2030, 1, 13, 9, tzinfo=UTC)]


def test_next_fire_times_of_an_interval_follow_its_start_date() -> None:
    job = scheduledjob_create(
        pipeline=make_pipeline("demo"),
        trigger_type=TriggerType.INTERVAL,
        trigger_value="3600",
        start_date=datetime(2030, 1, 1, tzinfo=UTC),
    )

    times = scheduledjob_next_fire_times(
        job=job, count=3, now=datetime(2030, 1, 1, 0, 30, tzinfo=UTC)
    )

    assert [t.hour for t in times] == [1, 2, 3]


def test_the_list_shows_the_next_fire_time() -> None:
    scheduledjob_create(
        pipeline=make_pipeline("demo"), trigger_type=TriggerType.CRON, trigger_value="15 4 * * *"
    )

    response = client_for(Role.READONLY).get(CHANGELIST)

    assert response.status_code == 200
    assert "04:15:00" in response.text


def test_an_admin_schedule_can_be_edited() -> None:
    job = scheduledjob_create(
        pipeline=make_pipeline("demo"), trigger_type=TriggerType.CRON, trigger_value="0 1 * * *"
    )
    before = job.updated_at

    response = client_for(Role.WRITE).post(
        change_url(job), form_data(trigger_type=TriggerType.INTERVAL, trigger_value="90")
    )

    assert response.status_code == 302
    job.refresh_from_db()
    assert (job.trigger_type, job.trigger_value) == (TriggerType.INTERVAL, "90")
    assert job.updated_at > before


def test_a_pipeline_json_schedule_is_read_only_with_a_note() -> None:
    job = ScheduledJob.objects.create(
        pipeline=make_pipeline("demo"),
        trigger_type=TriggerType.CRON,
        trigger_value="0 3 * * *",
        source=ScheduleSource.PIPELINE_JSON,
    )
    client = client_for(Role.WRITE)

    page = client.get(change_url(job))
    edit = client.post(change_url(job), form_data(trigger_value="0 4 * * *"))
    delete = client.post(
        reverse("admin:runs_app_scheduledjob_delete", args=[job.pk]), {"post": "yes"}
    )

    assert page.status_code == 200
    assert "demo/pipeline.json" in page.text and "edit the file" in page.text
    assert edit.status_code == 403 and delete.status_code == 403
    job.refresh_from_db()
    assert job.trigger_value == "0 3 * * *"


def test_the_services_refuse_to_change_pipeline_json_schedules() -> None:
    job = ScheduledJob.objects.create(
        pipeline=make_pipeline("demo"),
        trigger_type=TriggerType.CRON,
        trigger_value="0 3 * * *",
        source=ScheduleSource.PIPELINE_JSON,
    )

    with pytest.raises(ScheduleReadOnly) as update_error:
        scheduledjob_update(job=job, enabled=False)
    with pytest.raises(ScheduleReadOnly):
        scheduledjob_delete(job=job)

    assert update_error.value.code == "read_only"
    assert ScheduledJob.objects.get(pk=job.pk).enabled is True


def test_readonly_users_cannot_add_or_edit_schedules() -> None:
    make_pipeline("demo")
    job = scheduledjob_create(
        pipeline=make_pipeline("other"), trigger_type=TriggerType.INTERVAL, trigger_value="60"
    )
    client = client_for(Role.READONLY)

    assert client.get(CHANGELIST).status_code == 200
    assert client.post(ADD, form_data()).status_code == 403
    assert client.post(change_url(job), form_data(trigger_value="* * * * *")).status_code == 403
    assert ScheduledJob.objects.count() == 1


def test_deleting_an_admin_schedule_goes_through_the_service() -> None:
    job = scheduledjob_create(
        pipeline=make_pipeline("demo"), trigger_type=TriggerType.INTERVAL, trigger_value="60"
    )

    response = client_for(Role.WRITE).post(
        reverse("admin:runs_app_scheduledjob_delete", args=[job.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not ScheduledJob.objects.exists()


def test_engine_instances_are_visible_to_admins_only() -> None:
    EngineInstance.objects.create(id="host-1:123", hostname="host-1", pid=123, executor="local")

    admin_page = client_for(Role.ADMIN).get(reverse("admin:runs_app_engineinstance_changelist"))
    write_page = client_for(Role.WRITE).get(reverse("admin:runs_app_engineinstance_changelist"))

    assert admin_page.status_code == 200 and "host-1:123" in admin_page.text
    assert "Heartbeat age" in admin_page.text and "ff-alive" in admin_page.text
    assert write_page.status_code == 403


def test_the_disable_action_skips_pipeline_json_schedules() -> None:
    pipeline = make_pipeline("demo")
    mine = scheduledjob_create(
        pipeline=pipeline, trigger_type=TriggerType.INTERVAL, trigger_value="60"
    )
    declared = ScheduledJob.objects.create(
        pipeline=pipeline,
        trigger_type=TriggerType.CRON,
        trigger_value="0 3 * * *",
        source=ScheduleSource.PIPELINE_JSON,
    )

    response = client_for(Role.WRITE).post(
        CHANGELIST,
        {"action": "disable_selected", "_selected_action": [str(mine.pk), str(declared.pk)]},
        follow=True,
    )

    mine.refresh_from_db()
    declared.refresh_from_db()
    assert mine.enabled is False and declared.enabled is True
    assert "1 schedule(s) disabled." in response.text
    assert "Not disabled (defined in pipeline.json; edit the file)" in response.text


def test_the_add_form_renders_with_the_cron_help() -> None:
    make_pipeline("demo")

    response = client_for(Role.WRITE).get(ADD)

    assert response.status_code == 200
    assert "0 and 7 are Sunday" in response.text
    assert 'name="trigger_value"' in response.text
