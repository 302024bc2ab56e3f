from __future__ import annotations

import pytest

from pipelines_app.models import Pipeline
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_api import assert_error, client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db

WEBHOOKED = {
    "description": "nightly load",
    "tags": ["etl", "nightly"],
    "webhook_key": "secret-hook-key",
    "encrypted_env": {"DB_PASSWORD": "gAAAAAB-ciphertext"},
    "schedules": [{"id": "eu", "webhook_key": "eu-hook-key", "schedule_cron": "0 3 * * *"}],
}


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [p["name"] for p in response.json()["results"]]


def test_it_lists_pipelines_with_state_counters_and_last_run():
    etl = make_pipeline("etl", WEBHOOKED, total_runs=3, failed_runs=1, successful_runs=2)
    make_pipeline("broken", discovery_error="pipeline.json: key 'timeout': expected a number")
    make_pipeline("gone", is_missing=True)
    make_pipeline("off", enabled=False)
    make_run(etl, RunStatus.FAILED)

    body = client_for("READONLY").get("/api/pipelines/").json()

    rows = {p["name"]: p for p in body["results"]}
    assert body["count"] == 4
    assert {name: row["state"] for name, row in rows.items()} == {
        "broken": "broken",
        "etl": "ready",
        "gone": "missing",
        "off": "disabled",
    }
    assert rows["etl"]["total_runs"] == 3
    assert rows["etl"]["failed_runs"] == 1
    assert rows["etl"]["last_run_status"] == "FAILED"
    assert rows["etl"]["tags"] == ["etl", "nightly"]
    assert rows["broken"]["discovery_error"].startswith("pipeline.json")
    assert rows["broken"]["is_runnable"] is False
    assert "metadata" not in rows["etl"]


def test_it_filters_by_tag_and_enabled():
    make_pipeline("etl", {"tags": ["etl", "nightly"]})
    make_pipeline("report", {"tags": ["reports"]}, enabled=False)
    make_pipeline("plain")
    client = client_for("READONLY")

    assert names(client.get("/api/pipelines/", {"tag": "nightly"})) == ["etl"]
    assert names(client.get("/api/pipelines/", {"enabled": "false"})) == ["report"]
    assert names(client.get("/api/pipelines/", {"enabled": "true", "tag": "reports"})) == []
    body = assert_error(client.get("/api/pipelines/", {"enabled": "perhaps"}), 400, "invalid")
    assert "enabled" in body["fields"]


def test_it_hides_webhook_keys_and_ciphertext_from_non_admins():
    make_pipeline("etl", WEBHOOKED)

    for role in ("READONLY", "WRITE"):
        metadata = client_for(role).get("/api/pipelines/etl/").json()["metadata"]
        assert metadata["webhook_key"] == "***"
        assert metadata["schedules"][0]["webhook_key"] == "***"
        assert metadata["encrypted_env"] == {"DB_PASSWORD": "***"}
        assert metadata["description"] == "nightly load"

    metadata = client_for("ADMIN").get("/api/pipelines/etl/").json()["metadata"]
    assert metadata["webhook_key"] == "secret-hook-key"
    assert metadata["schedules"][0]["webhook_key"] == "eu-hook-key"


def test_it_answers_404_for_an_unknown_pipeline():
    assert_error(client_for("READONLY").get("/api/pipelines/nope/"), 404, "not_found")


def test_it_enables_and_disables_a_pipeline():
    make_pipeline("etl")
    client = client_for("WRITE")

    response = client.patch("/api/pipelines/etl/", {"enabled": False}, format="json")

    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert response.json()["state"] == "disabled"
    assert Pipeline.objects.get().enabled is False
    body = assert_error(client.patch("/api/pipelines/etl/", {}, format="json"), 400, "invalid")
    assert "enabled" in body["fields"]


def test_it_starts_a_run_with_parameters_and_a_run_configuration():
    make_pipeline("etl", WEBHOOKED)

    response = client_for("WRITE").post(
        "/api/pipelines/etl/runs/",
        {"parameters": {"DAY": "monday"}, "run_config_id": "eu"},
        format="json",
    )

    assert response.status_code == 201
    run = PipelineRun.objects.get()
    assert response.json()["id"] == str(run.id)
    assert run.status == RunStatus.PENDING
    assert run.triggered_by == "manual"
    assert run.parameters == {"DAY": "monday"}
    assert run.run_config_id == "eu"


def test_it_starts_a_run_without_a_body():
    make_pipeline("etl")

    response = client_for("WRITE").post("/api/pipelines/etl/runs/")

    assert response.status_code == 201
    assert PipelineRun.objects.get().parameters == {}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"parameters": {"1NAME": "x"}}, "parameters.1NAME"),
        ({"parameters": {"COUNT": 3}}, "parameters.COUNT"),
        ({"parameters": ["DAY"]}, "parameters"),
        ({"run_config_id": "nope"}, "run_config_id"),
        # PostgreSQL's jsonb cannot store NUL: refused before it reaches the database.
        ({"parameters": {"NAME": "a\u0000b"}}, "parameters.NAME"),
    ],
)
def test_it_rejects_invalid_run_requests_with_the_field_named(payload, field):
    make_pipeline("etl", WEBHOOKED)

    response = client_for("WRITE").post("/api/pipelines/etl/runs/", payload, format="json")

    assert field in assert_error(response, 400, "invalid")["fields"]
    assert PipelineRun.objects.count() == 0


def test_it_refuses_too_many_or_too_long_parameters(settings):
    settings.FASTFLOW_PARAMETERS_MAX_COUNT = 2
    settings.FASTFLOW_PARAMETER_VALUE_MAX_BYTES = 8
    make_pipeline("etl")
    client = client_for("WRITE")

    many = {"parameters": {"A": "1", "B": "2", "C": "3"}}
    long = {"parameters": {"A": "123456789"}}

    assert_error(client.post("/api/pipelines/etl/runs/", many, format="json"), 400, "invalid")
    assert_error(client.post("/api/pipelines/etl/runs/", long, format="json"), 400, "invalid")


def test_it_answers_404_and_409_for_missing_and_disabled_pipelines():
    make_pipeline("off", enabled=False)
    client = client_for("WRITE")

    assert_error(client.post("/api/pipelines/nope/runs/"), 404, "pipeline_not_found")
    body = assert_error(client.post("/api/pipelines/off/runs/"), 409, "pipeline_not_runnable")
    assert "disabled" in body["detail"]


def test_it_rejects_malformed_json_bodies():
    make_pipeline("etl")

    response = client_for("WRITE").post(
        "/api/pipelines/etl/runs/", "{not json", content_type="application/json"
    )

    assert_error(response, 400, "parse_error")


def test_it_syncs_the_pipelines_directory(make_pipeline_dir):
    make_pipeline_dir("fresh", pipeline_json={"description": "new one"})
    make_pipeline_dir("bad", pipeline_json="{broken")

    response = client_for("WRITE").post("/api/pipelines/sync/")

    assert response.status_code == 200
    report = response.json()
    assert sorted(report["found"]) == ["bad", "fresh"]
    assert "fresh" in report["created"]
    assert "bad" in report["errors"]
    assert Pipeline.objects.get(pipeline_name="fresh").description == "new one"
