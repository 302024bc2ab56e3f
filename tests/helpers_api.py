"""Shared helpers for the API, webhook and health tests: users with tokens, pipelines, runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from rest_framework.test import APIClient

from accounts_app.models import Role, User
from accounts_app.services import token_issue
from pipelines_app.models import Pipeline
from pipelines_app.spec import parse_pipeline_json
from runs_app.models import PipelineRun, RunStatus

ROLES = (Role.READONLY, Role.WRITE, Role.ADMIN)


def make_user(role: str = Role.READONLY, username: str | None = None) -> User:
    return User.objects.create_user(username=username or f"user-{role.lower()}", role=role)


def client_for(role: str | None) -> APIClient:
    """An APIClient carrying a real bearer token for a new user of `role` (None: anonymous)."""
    client = APIClient()
    if role is not None:
        user = make_user(role, username=f"api-{role.lower()}-{User.objects.count()}")
        _, token = token_issue(user=user, days=1)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def make_pipeline(name: str = "etl", pipeline_json: dict | None = None, **fields: Any) -> Pipeline:
    """A discovered pipeline row; `pipeline_json` is parsed and normalised like discovery does."""
    spec = parse_pipeline_json(pipeline_json or {}, source=f"{name}/pipeline.json").spec
    fields.setdefault("metadata", spec.to_dict())
    return Pipeline.objects.create(pipeline_name=name, **fields)


def make_run(
    pipeline: Pipeline, status: str = RunStatus.PENDING, *, log: bytes | None = None, **fields: Any
) -> PipelineRun:
    """A run row; with `log`, its log file is written under the data dir."""
    run = PipelineRun.objects.create(pipeline=pipeline, status=status, **fields)
    if log is not None:
        path = run_log_path(run)
        path.write_bytes(log)
    return run


def run_log_path(run: PipelineRun) -> Path:
    """Give the run a log file inside the (per-test) data dir and return its path."""
    path = Path(settings.LOGS_DIR) / run.pipeline_id / f"{run.id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    PipelineRun.objects.filter(id=run.id).update(log_file=str(path))
    run.log_file = str(path)
    return path


def assert_error(response: Any, status: int, code: str | None = None) -> dict:
    """The response is an API error of the one documented shape; returns its body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error", "detail", "fields"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["fields"], dict)
    if code is not None:
        assert body["error"] == code, body
    return body
