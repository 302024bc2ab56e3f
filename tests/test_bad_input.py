"""Bad input gets the usual JSON 400, never a 500: huge and non-ASCII log offsets, JSON bodies
nested deeper than Python's recursion limit (issue 8, item 7)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from runs_app.models import PipelineRun, RunStatus
from tests.helpers_api import assert_error, client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db

KEY = "k3y-0f-the-etl-pipeline"
TOO_BIG = str(2**63)  # one past the largest file offset the OS accepts
LARGEST = str(2**63 - 1)
DEEP_ARRAY = "[" * 100_000
DEEP_IN_OBJECT = '{"parameters": {"A": ' + "[" * 100_000 + "}}"


@pytest.fixture
def run() -> PipelineRun:
    return make_run(make_pipeline("etl", {"webhook_key": KEY}), RunStatus.SUCCESS, log=b"a\nb\n")


def admin_log(run: PipelineRun, role: str = "READONLY", **query: str):
    from tests.helpers_admin import client_for as admin_client

    url = reverse("admin:runs_app_pipelinerun_log", args=[run.pk])
    return admin_client(role).get(url, query)


@pytest.mark.parametrize("offset", [TOO_BIG, str(10**30), "²", "-1", "1e3", "x"])
def test_the_api_log_endpoint_refuses_an_unusable_offset(run, offset):
    response = client_for("READONLY").get(f"/api/runs/{run.id}/logs/", {"offset": offset})

    body = assert_error(response, 400, "invalid")
    assert "offset" in body["fields"]


def test_the_api_log_endpoint_accepts_the_largest_offset_and_returns_nothing(run):
    response = client_for("READONLY").get(f"/api/runs/{run.id}/logs/", {"offset": LARGEST})

    assert response.status_code == 200
    assert response.content == b""
    assert response["X-Next-Offset"] == LARGEST


@pytest.mark.parametrize("offset", [TOO_BIG, str(10**30), "²", "-1", "x"])
@pytest.mark.parametrize("via", ["query", "Last-Event-ID"])
def test_the_stream_refuses_an_unusable_offset_before_it_starts(run, offset, via):
    client = client_for("READONLY")
    url = f"/api/runs/{run.id}/logs/stream/"
    if via == "query":
        response = client.get(url, {"offset": offset})
    else:
        response = client.get(url, HTTP_LAST_EVENT_ID=offset)

    assert not response.streaming
    body = assert_error(response, 400, "invalid")
    assert "offset" in body["fields"]


def test_the_stream_from_the_largest_offset_just_ends(run):
    response = client_for("READONLY").get(f"/api/runs/{run.id}/logs/stream/", {"offset": LARGEST})

    assert response.status_code == 200
    events = b"".join(response.streaming_content).decode()
    assert "event: end" in events
    assert json.loads(events.rsplit("data: ", 1)[1]) == {"status": "SUCCESS", "offset": 2**63 - 1}


@pytest.mark.parametrize("offset", [TOO_BIG, "²", "-3", "x", ""])
def test_the_admin_log_view_refuses_an_unusable_offset(run, offset):
    response = admin_log(run, offset=offset)

    body = assert_error(response, 400, "invalid")
    assert "offset" in body["fields"]


def test_the_admin_log_view_accepts_the_largest_offset(run):
    response = admin_log(run, offset=LARGEST)

    assert response.status_code == 200
    assert response.json()["lines"] == []


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_IN_OBJECT])
def test_a_deeply_nested_api_body_is_a_parse_error(run, body):
    client = client_for("WRITE")

    response = client.post("/api/pipelines/etl/runs/", data=body, content_type="application/json")

    assert "nested too deeply" in assert_error(response, 400, "parse_error")["detail"]
    assert PipelineRun.objects.count() == 1
    response = client.patch("/api/pipelines/etl/", data=body, content_type="application/json")
    assert_error(response, 400, "parse_error")


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_IN_OBJECT])
def test_a_deeply_nested_webhook_body_is_a_parse_error_that_does_not_echo_the_key(run, body):
    client = Client(raise_request_exception=False)

    response = client.post(f"/webhooks/etl/{KEY}", data=body, content_type="application/json")

    assert "nested too deeply" in assert_error(response, 400, "parse_error")["detail"]
    assert KEY.encode() not in response.content
    assert PipelineRun.objects.count() == 1


def test_nesting_within_the_limit_is_still_validated_normally(run):
    nested = '{"A": ' + "[" * 500 + "]" * 500 + "}"

    response = Client().post(f"/webhooks/etl/{KEY}", data=nested, content_type="application/json")

    body = assert_error(response, 400, "invalid")
    assert "must be a string" in body["fields"]["parameters.A"]


def test_an_unexpected_webhook_failure_is_a_json_500_without_the_key(run, monkeypatch):
    from runs_app import webhooks

    def explode(**kwargs):
        raise RuntimeError(f"boom near {KEY}")

    monkeypatch.setattr(webhooks.services, "run_enqueue", explode)
    response = Client(raise_request_exception=False).post(
        f"/webhooks/etl/{KEY}", data="", content_type="application/json"
    )

    assert_error(response, 500, "server_error")
    assert KEY.encode() not in response.content
