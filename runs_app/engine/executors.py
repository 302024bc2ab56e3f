"""Choosing the executor: `FASTFLOW_EXECUTOR=docker|local`."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from runs_app.engine.base import Executor

EXECUTOR_NAMES = ("docker", "local")


def get_executor(name: str | None = None) -> Executor:
    """A new executor instance (the Docker one connects lazily, on first use)."""
    name = name or settings.FASTFLOW_EXECUTOR
    if name == "docker":
        from runs_app.engine.docker_executor import DockerExecutor

        return DockerExecutor()
    if name == "local":
        from runs_app.engine.local_executor import LocalExecutor

        return LocalExecutor()
    expected = ", ".join(EXECUTOR_NAMES)
    raise ImproperlyConfigured(
        f"FASTFLOW_EXECUTOR: unknown executor {name!r} (expected one of {expected})"
    )
