"""Helpers for the run and schedule admin tests: users, pipelines with specs, runs with logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import Client

from accounts_app.models import Role, User
from pipelines_app.models import Pipeline
from pipelines_app.spec import parse_pipeline_json
from runs_app.models import PipelineRun, RunStatus


def make_user(role: str = Role.WRITE, username: str | None = None) -> User:
    return User.objects.create_user(username=username or f"user-{role.lower()}", role=role)


def client_for(role: str) -> Client:
    client = Client()
    client.force_login(make_user(role))
    return client


def make_pipeline(name: str = "demo", pipeline_json: dict | None = None, **fields: Any) -> Pipeline:
    metadata = parse_pipeline_json(pipeline_json or {}, source=f"{name}/pipeline.json").spec
    return Pipeline.objects.create(pipeline_name=name, metadata=metadata.to_dict(), **fields)


def run_log_path(run_id: object) -> Path:
    return Path(settings.DATA_DIR) / "logs" / f"{run_id}.log"


def make_run(
    pipeline: Pipeline,
    status: str = RunStatus.PENDING,
    *,
    log: str | None = None,
    metrics: list[dict] | None = None,
    **fields: Any,
) -> PipelineRun:
    run = PipelineRun.objects.create(pipeline=pipeline, status=status, **fields)
    if log is not None:
        path = run_log_path(run.pk)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(log)
        run.log_file = str(path)
    if metrics is not None:
        path = Path(settings.DATA_DIR) / "metrics" / f"{run.pk}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(sample) + "\n" for sample in metrics))
        run.metrics_file = str(path)
    run.save(update_fields=["log_file", "metrics_file"])
    return run


def append_log(run: PipelineRun, text: str) -> None:
    with Path(run.log_file).open("a") as fh:
        fh.write(text)
        fh.flush()
