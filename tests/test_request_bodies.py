"""A request body sent with `Transfer-Encoding: chunked` and no Content-Length is read under the
same size cap as any other (413 beyond it), or refused with 411 by a server that cannot decode
it — never taken as empty (issue 8, item 4). Real servers: gunicorn and runserver."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from accounts_app.models import Role, User
from accounts_app.services import token_issue
from runs_app.models import PipelineRun
from tests.helpers_api import make_pipeline
from tests.helpers_web import WebServer

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "k3y-0f-the-etl-pipeline"
WEBHOOK = f"/webhooks/etl/{KEY}"
JSON = {"Content-Type": "application/json"}


def pieces(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@pytest.fixture
def etl():
    return make_pipeline("etl", {"webhook_key": KEY})


@pytest.fixture
def token() -> str:
    user = User.objects.create_user(username="writer", role=Role.WRITE)
    return token_issue(user=user, days=1)[1]


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, django_db_blocker, tmp_path_factory):
    # One server for the module: the pipelines and runs each test writes are committed rows.
    root = tmp_path_factory.mktemp("gunicorn")
    with django_db_blocker.unblock(), WebServer("gunicorn", workers=2, root=root) as server:
        yield server


@pytest.fixture
def runserver():
    with WebServer("runserver") as server:
        yield server


def error(body: bytes) -> dict:
    data = json.loads(body)
    assert set(data) == {"error", "detail", "fields"}, data
    return data


def test_gunicorn_delivers_a_chunked_webhook_body(gunicorn, etl):
    body = json.dumps({"DAY": "monday", "REGION": "eu"}).encode()

    status, _, answer = gunicorn.request("POST", WEBHOOK, headers=JSON, chunks=pieces(body, 7))

    assert status == 202, answer
    run = PipelineRun.objects.get(id=json.loads(answer)["run_id"])
    assert run.parameters == {"DAY": "monday", "REGION": "eu"}


@pytest.mark.parametrize("size", [300 * 1024, 10 * 1024 * 1024])
def test_gunicorn_refuses_a_chunked_webhook_body_over_the_cap_with_413(gunicorn, etl, size):
    body = b'{"DAY": "' + b"x" * size + b'"}'

    status, _, answer = gunicorn.request("POST", WEBHOOK, headers=JSON, chunks=pieces(body))

    assert status == 413, answer
    assert error(answer)["error"] == "payload_too_large"
    assert PipelineRun.objects.count() == 0


def test_gunicorn_delivers_a_chunked_api_body(gunicorn, etl, token):
    body = json.dumps({"parameters": {"DAY": "tuesday"}}).encode()
    headers = {**JSON, "Authorization": f"Bearer {token}"}

    status, _, answer = gunicorn.request(
        "POST", "/api/pipelines/etl/runs/", headers=headers, chunks=pieces(body, 5)
    )

    assert status == 201, answer
    assert PipelineRun.objects.get().parameters == {"DAY": "tuesday"}


def test_gunicorn_refuses_a_chunked_api_body_over_the_cap_with_413(gunicorn, etl, token):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024
    body = b'{"parameters": {"DAY": "' + b"x" * size + b'"}}'
    headers = {**JSON, "Authorization": f"Bearer {token}"}

    status, _, answer = gunicorn.request(
        "POST", "/api/pipelines/etl/runs/", headers=headers, chunks=pieces(body)
    )

    assert status == 413, answer
    assert error(answer)["error"] == "payload_too_large"
    assert PipelineRun.objects.count() == 0


def test_gunicorn_still_reads_bodies_with_a_content_length(gunicorn, etl):
    body = json.dumps({"DAY": "wednesday"}).encode()

    status, _, answer = gunicorn.request("POST", WEBHOOK, body=body, headers=JSON)

    assert status == 202, answer
    assert PipelineRun.objects.get().parameters == {"DAY": "wednesday"}


def test_runserver_refuses_a_chunked_body_it_cannot_read_with_411(runserver, etl, token):
    body = json.dumps({"DAY": "monday"}).encode()

    status, _, answer = runserver.request("POST", WEBHOOK, headers=JSON, chunks=pieces(body, 4))

    assert status == 411, answer
    assert error(answer)["error"] == "length_required"
    headers = {**JSON, "Authorization": f"Bearer {token}"}
    status, _, answer = runserver.request(
        "POST", "/api/pipelines/etl/runs/", headers=headers, chunks=pieces(body)
    )
    assert status == 411, answer
    assert PipelineRun.objects.count() == 0
    # With a Content-Length the same server takes it.
    status, _, answer = runserver.request("POST", WEBHOOK, body=body, headers=JSON)
    assert status == 202, answer
    assert PipelineRun.objects.get().parameters == {"DAY": "monday"}
