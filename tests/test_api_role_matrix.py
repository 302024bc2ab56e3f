"""Every endpoint of the pipelines, runs, schedules and secrets APIs × every role.

Each cell runs against a fresh database, so a write by one role cannot change what the next
role sees. The accounts endpoints have their own matrix in the accounts tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runs_app.logs import run_artifacts_dir
from runs_app.models import RunStatus, ScheduledJob, TriggerType
from secrets_app.services import secret_set
from tests.helpers_api import client_for, make_pipeline, make_run

ANON, RO, W, A = None, "READONLY", "WRITE", "ADMIN"
ROLES = (ANON, RO, W, A)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    expected: tuple[int, int, int, int]  # anonymous, READONLY, WRITE, ADMIN
    body: dict | None = None


def reader(ok: int = 200) -> tuple[int, int, int, int]:
    return (401, ok, ok, ok)


def writer(ok: int) -> tuple[int, int, int, int]:
    return (401, 403, ok, ok)


def admin(ok: int) -> tuple[int, int, int, int]:
    return (401, 403, 403, ok)


ENDPOINTS = [
    Endpoint("get", "/api/pipelines/", reader()),
    Endpoint("get", "/api/pipelines/etl/", reader()),
    Endpoint("patch", "/api/pipelines/etl/", writer(200), {"enabled": False}),
    Endpoint("post", "/api/pipelines/etl/runs/", writer(201), {"parameters": {"A": "1"}}),
    Endpoint("post", "/api/pipelines/sync/", writer(200)),
    Endpoint("get", "/api/runs/", reader()),
    Endpoint("get", "/api/runs/{finished}/", reader()),
    Endpoint("post", "/api/runs/{pending}/cancel/", writer(202)),
    Endpoint("post", "/api/runs/{finished}/retry/", writer(201)),
    Endpoint("get", "/api/runs/{finished}/logs/", reader()),
    Endpoint("get", "/api/runs/{finished}/logs/stream/", reader()),
    Endpoint("get", "/api/runs/{finished}/metrics/", reader()),
    Endpoint("get", "/api/runs/{finished}/artifacts/main.ipynb", reader()),
    Endpoint("get", "/api/schedules/", reader()),
    Endpoint(
        "post",
        "/api/schedules/",
        writer(201),
        {"pipeline": "etl", "trigger_type": "INTERVAL", "trigger_value": "60"},
    ),
    Endpoint("get", "/api/schedules/{schedule}/", reader()),
    Endpoint("patch", "/api/schedules/{schedule}/", writer(200), {"enabled": False}),
    Endpoint("delete", "/api/schedules/{schedule}/", writer(204)),
    Endpoint("get", "/api/secrets/", admin(200)),
    Endpoint("post", "/api/secrets/", admin(201), {"key": "NEW_KEY", "value": "v"}),
    Endpoint("get", "/api/secrets/API_TOKEN/", admin(200)),
    Endpoint("put", "/api/secrets/API_TOKEN/", admin(200), {"value": "replaced"}),
    Endpoint("delete", "/api/secrets/API_TOKEN/", admin(204)),
    Endpoint("post", "/api/encrypted-values/", writer(201), {"value": "to encrypt"}),
    Endpoint("get", "/api/schema/", (200, 200, 200, 200)),
    Endpoint("get", "/api/docs/", (200, 200, 200, 200)),
]


def world() -> dict[str, str]:
    pipeline = make_pipeline("etl", {"webhook_key": "hook-key-1234"})
    finished = make_run(pipeline, RunStatus.FAILED, log=b"line\n")
    pending = make_run(pipeline)
    schedule = ScheduledJob.objects.create(
        pipeline=pipeline, trigger_type=TriggerType.CRON, trigger_value="0 3 * * *"
    )
    secret_set(key="API_TOKEN", value="s3cret-value")
    artifacts = run_artifacts_dir(finished)
    artifacts.mkdir(parents=True)
    (artifacts / "main.ipynb").write_text("{}")
    return {"finished": str(finished.id), "pending": str(pending.id), "schedule": str(schedule.id)}


@pytest.mark.django_db
@pytest.mark.parametrize("role_index", range(4), ids=["anonymous", "READONLY", "WRITE", "ADMIN"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method.upper()} {e.path}")
def test_role_matrix(endpoint: Endpoint, role_index: int, make_pipeline_dir):
    ids = world()
    client = client_for(ROLES[role_index])
    call = getattr(client, endpoint.method)

    response = call(endpoint.path.format(**ids), endpoint.body, format="json")
    if response.streaming:
        b"".join(response.streaming_content)

    assert response.status_code == endpoint.expected[role_index], response.content[:300]
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "detail", "fields"}
