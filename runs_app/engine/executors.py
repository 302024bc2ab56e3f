"""Choosing the executor: `FASTFLOW_EXECUTOR=docker|local|kubernetes`."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from runs_app.engine.base import Executor

EXECUTOR_NAMES = ("docker", "local", "kubernetes")


def get_executor(name: str | None = None) -> Executor:
    """A new executor instance (the Docker one connects lazily, on first use)."""
    name = name or settings.FASTFLOW_EXECUTOR
    if name == "docker":
        from runs_app.engine.docker_executor import DockerExecutor

        return DockerExecutor()
    if name == "local":
        from runs_app.engine.local_executor import LocalExecutor

        return LocalExecutor()
    if name == "kubernetes":
        from runs_app.engine.k8s_executor import KubernetesExecutor

        return KubernetesExecutor()
    expected = ", ".join(EXECUTOR_NAMES)
    raise ImproperlyConfigured(
        f"FASTFLOW_EXECUTOR: unknown executor {name!r} (expected one of {expected})"
    )
