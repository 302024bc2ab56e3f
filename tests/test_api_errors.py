"""Every API failure has the one body shape and the right status code."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from fastflow_site.api.errors import api_exception_handler
from fastflow_site.errors import ServiceError
from runs_app.errors import (
    InvalidRunRequest,
    PipelineNotFound,
    PipelineNotRunnable,
    RunStateConflict,
)
from tests.helpers_api import assert_error, client_for, make_pipeline


@pytest.mark.django_db
def test_it_answers_401_with_a_bearer_challenge_without_credentials():
    response = APIClient().get("/api/runs/")

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_it_answers_401_for_a_bad_token():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")

    assert_error(client.get("/api/runs/"), 401, "authentication_failed")


@pytest.mark.django_db
def test_it_answers_403_for_a_role_too_small():
    make_pipeline("etl")

    body = assert_error(
        client_for("READONLY").post("/api/pipelines/etl/runs/"), 403, "permission_denied"
    )
    assert body["fields"] == {}


@pytest.mark.django_db
def test_it_answers_404_for_unknown_api_paths_in_json():
    client = client_for("READONLY")

    assert_error(client.get("/api/nothing/here/"), 404, "not_found")
    assert_error(client.get("/api/runs"), 404, "not_found")  # no HTML redirect either
    assert_error(client.get("/api/secrets/%0Abad/"), 404, "not_found")  # control characters
    assert_error(client.get("/api/pipelines/a%00b/"), 404, "not_found")
    # A browser-style client (CSRF enforced) gets the JSON 404 too, not Django's HTML 403.
    assert_error(APIClient(enforce_csrf_checks=True).post("/api/nothing/"), 404, "not_found")


@pytest.mark.django_db
def test_it_answers_405_for_a_wrong_method():
    make_pipeline("etl")

    assert_error(client_for("WRITE").delete("/api/pipelines/etl/"), 405, "method_not_allowed")
    # Read-only endpoints too: a write method they lack is a 405, not a role problem (403).
    assert_error(client_for("WRITE").post("/api/runs/", {}), 405, "method_not_allowed")
    assert_error(client_for("READONLY").delete("/api/pipelines/"), 405, "method_not_allowed")
    assert_error(client_for(None).post("/api/runs/", {}), 401, "not_authenticated")


@pytest.mark.django_db
def test_it_answers_415_for_an_unsupported_body_type():
    make_pipeline("etl")

    response = client_for("WRITE").post(
        "/api/pipelines/etl/runs/", "DAY=monday", content_type="text/csv"
    )

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.django_db
def test_it_answers_400_for_malformed_json():
    make_pipeline("etl")

    response = client_for("WRITE").patch(
        "/api/pipelines/etl/", b"{'enabled': true}", content_type="application/json"
    )

    assert_error(response, 400, "parse_error")


@pytest.mark.django_db
def test_it_answers_413_for_a_body_above_the_upload_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    make_pipeline("etl")
    payload = {"parameters": {"BIG": "x" * 2000}}

    response = client_for("WRITE").post("/api/pipelines/etl/runs/", payload, format="json")

    assert_error(response, 413, "payload_too_large")


@pytest.mark.django_db
def test_it_names_every_invalid_field_in_a_validation_error():
    make_pipeline("etl")

    response = client_for("WRITE").post(
        "/api/schedules/", {"trigger_type": "HOURLY"}, format="json"
    )

    body = assert_error(response, 400, "invalid")
    assert set(body["fields"]) == {"pipeline", "trigger_type", "trigger_value"}
    assert "pipeline" in body["detail"]


def test_it_turns_an_unexpected_exception_into_a_500_without_internals():
    response = api_exception_handler(RuntimeError("database password is hunter2"), {})

    assert response.status_code == 500
    assert response.data == {
        "error": "server_error",
        "detail": "internal server error",
        "fields": {},
    }


def test_it_maps_run_service_errors_to_statuses():
    cases = [
        (PipelineNotFound("pipeline 'x' does not exist"), 404, "pipeline_not_found"),
        (PipelineNotRunnable("pipeline 'x' is disabled"), 409, "pipeline_not_runnable"),
        (RunStateConflict("run finished"), 409, "conflict"),
        (InvalidRunRequest("bad", {"parameters.X": "too long"}), 400, "invalid"),
    ]
    for exc, status, code in cases:
        response = api_exception_handler(exc, {})
        assert response.status_code == status
        assert response.data["error"] == code
        assert response.data["detail"] == str(exc)
    assert response.data["fields"] == {"parameters.X": "too long"}


def test_any_service_error_leaves_with_its_own_code_status_fields_and_headers():
    class SlowDown(ServiceError):
        code = "slow_down"
        http_status = 429

    response = api_exception_handler(
        SlowDown("try later", {"name": "busy"}, headers={"Retry-After": "7"}), {}
    )

    assert response.status_code == 429
    assert response.data == {
        "error": "slow_down",
        "detail": "try later",
        "fields": {"name": "busy"},
    }
    assert response["Retry-After"] == "7"
