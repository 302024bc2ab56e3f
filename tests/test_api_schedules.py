from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runs_app.models import ScheduledJob, ScheduleSource, TriggerType
from tests.helpers_api import assert_error, client_for, make_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer():
    return client_for("WRITE")


@pytest.fixture
def etl():
    return make_pipeline("etl", {"schedules": [{"id": "eu"}]})


def create(client, **fields):
    payload = {"pipeline": "etl", "trigger_type": "CRON", "trigger_value": "0 3 * * *", **fields}
    return client.post("/api/schedules/", payload, format="json")


def test_it_creates_a_cron_schedule_and_shows_the_next_fire_times(writer, etl):
    response = create(writer, trigger_value="30 6 * * 0")

    assert response.status_code == 201, response.content
    body = response.json()
    job = ScheduledJob.objects.get()
    assert body["id"] == str(job.id)
    assert body["source"] == "admin"
    assert body["enabled"] is True
    fires = [datetime.fromisoformat(t) for t in body["next_fire_times"]]
    assert len(fires) == 5
    assert fires == sorted(fires)
    # Standard cron: day-of-week 0 is Sunday (isoweekday 7), at 06:30 UTC.
    assert {(t.isoweekday(), t.hour, t.minute, t.utcoffset().total_seconds()) for t in fires} == {
        (7, 6, 30, 0)
    }


def test_it_creates_an_interval_schedule_for_a_run_configuration(writer, etl):
    response = create(
        writer, trigger_type="INTERVAL", trigger_value="3600", run_config_id="eu", enabled=False
    )

    assert response.status_code == 201
    job = ScheduledJob.objects.get()
    assert (job.trigger_type, job.trigger_value, job.run_config_id) == ("INTERVAL", "3600", "eu")
    assert response.json()["next_fire_times"] == []  # disabled schedules never fire


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"trigger_value": "0 3 * *"}, "trigger_value"),
        ({"trigger_value": "61 3 * * *"}, "trigger_value"),
        ({"trigger_type": "INTERVAL", "trigger_value": "-5"}, "trigger_value"),
        ({"trigger_type": "DATE"}, "trigger_type"),
        ({"pipeline": "nope"}, "pipeline"),
        ({"run_config_id": "us"}, "run_config_id"),
        (
            {"start_date": "2030-01-02T00:00:00Z", "end_date": "2030-01-01T00:00:00Z"},
            "end_date",
        ),
    ],
)
def test_it_rejects_invalid_schedules_with_the_field_named(writer, etl, fields, field):
    body = assert_error(create(writer, **fields), 400, "invalid")

    assert field in body["fields"]
    assert ScheduledJob.objects.count() == 0


def test_it_accepts_the_trigger_type_in_any_case(writer, etl):
    response = create(writer, trigger_type="interval", trigger_value="60")

    assert response.status_code == 201, response.content
    assert response.json()["trigger_type"] == TriggerType.INTERVAL
    body = assert_error(create(writer, trigger_type="hourly"), 400, "invalid")
    assert "CRON" in body["fields"]["trigger_type"]  # a miss names the valid types


def test_it_lists_newest_first_and_filters(writer, etl):
    first = create(writer).json()
    second = create(writer, trigger_type="INTERVAL", trigger_value="60", enabled=False).json()
    make_pipeline("other")
    create(writer, pipeline="other")
    reader = client_for("READONLY")

    listed = reader.get("/api/schedules/", {"pipeline": "etl"}).json()
    assert [j["id"] for j in listed["results"]] == [second["id"], first["id"]]
    enabled = reader.get("/api/schedules/", {"pipeline": "etl", "enabled": "true"}).json()
    assert [j["id"] for j in enabled["results"]] == [first["id"]]
    assert reader.get("/api/schedules/", {"source": "pipeline_json"}).json()["count"] == 0
    assert_error(reader.get("/api/schedules/", {"source": "elsewhere"}), 400, "invalid")


def test_it_updates_part_of_a_schedule(writer, etl):
    job_id = create(writer).json()["id"]

    response = writer.patch(
        f"/api/schedules/{job_id}/", {"trigger_value": "15 * * * *"}, format="json"
    )

    assert response.status_code == 200
    job = ScheduledJob.objects.get()
    assert job.trigger_value == "15 * * * *"
    assert job.trigger_type == TriggerType.CRON
    assert all(datetime.fromisoformat(t).minute == 15 for t in response.json()["next_fire_times"])
    bad = writer.patch(f"/api/schedules/{job_id}/", {"trigger_value": "nope"}, format="json")
    assert "trigger_value" in assert_error(bad, 400, "invalid")["fields"]
    assert ScheduledJob.objects.get().trigger_value == "15 * * * *"


def test_it_deletes_a_schedule(writer, etl):
    job_id = create(writer).json()["id"]

    assert writer.delete(f"/api/schedules/{job_id}/").status_code == 204
    assert ScheduledJob.objects.count() == 0
    assert_error(writer.delete(f"/api/schedules/{job_id}/"), 404, "not_found")


def test_it_refuses_to_edit_schedules_defined_in_pipeline_json(writer, etl):
    job = ScheduledJob.objects.create(
        pipeline=etl,
        trigger_type=TriggerType.CRON,
        trigger_value="0 1 * * *",
        source=ScheduleSource.PIPELINE_JSON,
    )

    patch = writer.patch(f"/api/schedules/{job.id}/", {"enabled": False}, format="json")
    delete = writer.delete(f"/api/schedules/{job.id}/")

    assert "pipeline.json" in assert_error(patch, 409, "read_only")["detail"]
    assert_error(delete, 409, "read_only")
    job.refresh_from_db()
    assert job.enabled is True


def test_it_shows_one_schedule_with_its_window(writer, etl):
    job_id = create(
        writer, start_date="2030-01-01T00:00:00Z", end_date="2030-01-03T00:00:00Z"
    ).json()["id"]

    body = client_for("READONLY").get(f"/api/schedules/{job_id}/").json()

    fires = [datetime.fromisoformat(t) for t in body["next_fire_times"]]
    assert fires == [datetime(2030, 1, 1, 3, tzinfo=UTC), datetime(2030, 1, 2, 3, tzinfo=UTC)]
