"""The Kubernetes executor's cache warm-up: the warm-up steps, each as a Job.

The same steps as the Docker executor's (`docker_executor.warmup_steps`): resolve
requirements.txt (when there is one), create the environment, install into it (with the
run's extra requirements, e.g. the notebook runner's), in the runner image with a run's
lock-down, the pipeline folder read-only and only the shared cache and a fresh build
directory writable (subPaths of FASTFLOW_K8S_CACHE_VOLUME). The engine sees that volume at
FASTFLOW_UV_CACHE_DIR and publishes the build (an atomic rename) when every step succeeded;
runs then mount it read-only at /venv.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from runs_app.engine.base import InfrastructureError
from runs_app.engine.docker_executor import warmup_spec, warmup_steps
from runs_app.engine.k8s_api import log_lines
from runs_app.engine.k8s_spec import CONTAINER, require_cache_volume, warmup_manifest
from runs_app.engine.k8s_status import ended, lost_reason, pending_reason
from runs_app.engine.uvcache import (
    env_build_dir,
    env_publish,
    env_ready,
    env_remove,
    uv_cache_dir,
    warm_step_failed,
)

if TYPE_CHECKING:
    from runs_app.engine.k8s_executor import KubernetesExecutor


def warm_with_jobs(
    executor: KubernetesExecutor,
    *,
    pipeline_name: str,
    pipeline_dir: Path,
    python_version: str,
    timeout: float,
    extra_requirements: tuple[str, ...] = (),
) -> str:
    """Prepare the pipeline's environment (its requirements.txt, if any, and
    `extra_requirements`, e.g. the notebook runner's); "" on success, else the failed step's
    message."""
    spec = warmup_spec(pipeline_name, pipeline_dir, python_version, extra_requirements)
    key = executor.env_key(spec)
    if key is None or env_ready(executor.name, key) is not None:
        return ""
    steps = warmup_steps(spec)
    require_cache_volume(executor.pod)  # before anything is created
    build = env_build_dir(executor.name, key, world_writable=True)
    cache = uv_cache_dir(executor.name, world_writable=True)
    deadline = time.monotonic() + timeout
    try:
        for what, command in steps:
            manifest = warmup_manifest(
                spec,
                executor.pod,
                name=f"fastflow-warmup-{uuid.uuid4().hex[:12]}",
                command=command,
                build=build,
                cache=cache,
            )
            failure = _step(executor, manifest, what, deadline, timeout)
            if failure:
                return failure
        env_publish(build, executor.name, key)
    finally:
        if build.exists():
            env_remove(build)
    return ""


def _step(
    executor: KubernetesExecutor, manifest: dict, what: str, deadline: float, timeout: float
) -> str:
    api = executor.api
    name = manifest["metadata"]["name"]
    try:
        api.create_job(manifest)
    except LookupError:
        raise InfrastructureError(f"{what}: namespace {api.namespace!r} does not exist") from None
    except InfrastructureError as exc:
        raise InfrastructureError(f"{what}: {exc}") from exc
    try:
        return _wait_step(executor, name, what, deadline, timeout)
    finally:
        with contextlib.suppress(InfrastructureError):
            api.delete_job(name, grace_seconds=0, foreground=False)


def _wait_step(
    executor: KubernetesExecutor, name: str, what: str, deadline: float, timeout: float
) -> str:
    api = executor.api
    poll = settings.FASTFLOW_K8S_POLL_SECONDS
    while time.monotonic() < deadline:
        try:
            pods = api.list_pods(f"job-name={name}")
        except InfrastructureError as exc:
            raise InfrastructureError(f"{what}: {exc}") from exc
        pod = pods[0] if pods else None
        end = ended(pod, CONTAINER) if pod else None
        if end is not None:
            if end.exit_code == 0:
                return ""
            return warm_step_failed(what, end.exit_code, _output(executor, pod))
        if pod is not None and (lost := lost_reason(pod, CONTAINER)):
            return f"{what} failed: its pod was lost: {lost}"
        reason, permanent = pending_reason(pod, CONTAINER)
        if permanent:
            return f"{what} failed: its pod cannot start: {reason}"
        time.sleep(poll)
    return f"{what} timed out after {timeout:g} s"


def _output(executor: KubernetesExecutor, pod: dict) -> str:
    """The step's output, without the API's timestamps."""
    try:
        response = executor.api.pod_log(pod["metadata"]["name"], CONTAINER, None)
    except (InfrastructureError, LookupError) as exc:
        return f"(its output could not be read: {exc})"
    lines = [raw.partition(b" ")[2].decode("utf-8", "replace") for raw in log_lines(response)]
    return "\n".join(lines)
