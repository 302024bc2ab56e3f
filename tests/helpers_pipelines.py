"""Shared helpers for the pipeline discovery, spec and admin tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from pipelines_app.models import Pipeline
from runs_app.models import PipelineRun
from secrets_app import crypto

# Real tokens of the test key: discovery refuses encrypted_env values it cannot decrypt.
TOKEN_CIPHERTEXT = crypto.encrypt("token-from-pipeline-json")
OTHER_CIPHERTEXT = crypto.encrypt("token-of-the-nightly-run-config")


def full_pipeline_json() -> dict[str, Any]:
    """A pipeline.json that sets every documented key to a non-default value."""
    return {
        "description": "Nightly export",
        "tags": ["etl", "nightly"],
        "enabled": False,
        "type": "script",
        "python_version": "3.12",
        "cpu_hard_limit": 2,
        "mem_hard_limit": "1.5g",
        "cpu_soft_limit": 1.5,
        "mem_soft_limit": "512m",
        "timeout": 900,
        "retry_attempts": 3,
        "retry_strategy": {
            "type": "exponential_backoff",
            "initial_delay": 10,
            "multiplier": 3,
            "max_delay": 200,
        },
        "default_env": {"MODE": "full", "LEVEL": "info"},
        "encrypted_env": {"TOKEN": TOKEN_CIPHERTEXT},
        "secrets": ["DB_PASSWORD", "API_KEY"],
        "webhook_key": "pipeline-level-webhook-key-0001",
        "webhook_secret_env": "WEBHOOK_HMAC",
        "schedule_start": "2026-01-01",
        "schedule_end": "2026-12-31",
        "run_once_at": "2026-06-01T12:30:00+02:00",
        "max_instances": 2,
        "downstream_triggers": [
            {"pipeline": "report", "on_success": True, "on_failure": True, "run_config_id": "daily"}
        ],
        "schedules": [
            {
                "id": "nightly",
                "schedule_cron": "0 2 * * *",
                "schedule_start": "2026-02-01T00:00:00",
                "schedule_end": "2026-03-01",
                "enabled": False,
                "default_env": {"MODE": "nightly"},
                "encrypted_env": {"TOKEN": OTHER_CIPHERTEXT},
                "cpu_hard_limit": 4,
                "mem_hard_limit": "2g",
                "cpu_soft_limit": 3,
                "mem_soft_limit": "1g",
                "timeout": 0,
                "retry_attempts": 1,
                "retry_strategy": {"type": "custom_schedule", "delays": [5, 10]},
                "webhook_key": "nightly-run-config-webhook-key",
            },
            {"id": "hourly", "schedule_interval_seconds": 3600},
        ],
        "restart_on_crash": True,
        "restart_cooldown": 15,
        "restart_interval": "0 4 * * *",
    }


def make_run(pipeline: Pipeline, status: str, *, minutes_ago: int = 0) -> PipelineRun:
    queued: datetime = timezone.now() - timedelta(minutes=minutes_ago)
    return PipelineRun.objects.create(pipeline=pipeline, status=status, queued_at=queued)
