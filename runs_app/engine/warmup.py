"""Cache warm-up: resolve a pipeline's requirements and install them once into the uv cache.

Runs the same uv command as a real run (same image and cache for Docker, same uv and
interpreter locally), so the environment uv builds for `--with-requirements` is reused by the
next run and its setup only links what is already there. The pipeline folder is never written:
it is mounted read-only in Docker and the lock file goes to a temporary directory.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

from runs_app.engine.base import Executor, InfrastructureError, RunSpec
from runs_app.engine.executors import get_executor
from runs_app.engine.uvcache import mark_warm

WARMUP_TIMEOUT = 600.0
OUTPUT_TAIL_LINES = 30
WARMUP_LABEL = "fastflow.warmup"


@dataclass(frozen=True)
class WarmupResult:
    ok: bool
    duration: float
    message: str


def warm_cache(
    *,
    pipeline_name: str,
    pipeline_dir: Path,
    python_version: str,
    executor: Executor | None = None,
    timeout: float = WARMUP_TIMEOUT,
) -> WarmupResult:
    """Resolve and install `requirements.txt` into the executor's uv cache; never raises."""
    started = time.monotonic()
    pipeline_dir = Path(pipeline_dir)
    if not (pipeline_dir / "requirements.txt").is_file():
        return WarmupResult(True, 0.0, "no requirements.txt: nothing to warm up")
    executor = executor or get_executor()
    try:
        if executor.name == "docker":
            stamp = executor.warm_stamp(
                _spec(pipeline_name, pipeline_dir, python_version),
                executor.ensure_image(python_version),
            )
            message = _warm_in_docker(
                executor, pipeline_name, pipeline_dir, python_version, timeout
            )
        else:
            from runs_app.engine.local_executor import local_warm_stamp

            stamp = local_warm_stamp(pipeline_dir=pipeline_dir, python_version=python_version)
            message = _warm_locally(pipeline_name, pipeline_dir, python_version, timeout)
    except InfrastructureError as exc:
        return WarmupResult(False, time.monotonic() - started, str(exc))
    duration = time.monotonic() - started
    if message:
        return WarmupResult(False, duration, message)
    mark_warm(stamp)
    return WarmupResult(
        True, duration, f"requirements installed into the cache in {duration:.1f} s"
    )


def _spec(name: str, pipeline_dir: Path, python_version: str) -> RunSpec:
    """A stand-in run for building the warm-up container (it writes no log or metrics)."""
    return RunSpec(
        run_id=f"warmup-{uuid.uuid4()}",
        pipeline_name=name,
        pipeline_dir=pipeline_dir,
        has_requirements=True,
        python_version=python_version,
        env={},
        mask_values=(),
        log_file=Path(tempfile.gettempdir()) / "unused.log",
        metrics_file=Path(tempfile.gettempdir()) / "unused.jsonl",
    )


def _tail(output: str) -> str:
    return "\n".join(output.strip().splitlines()[-OUTPUT_TAIL_LINES:])


def _warm_locally(name: str, pipeline_dir: Path, python_version: str, timeout: float) -> str:
    from runs_app.engine.local_executor import local_env, local_python, local_uv_command, uv_binary

    with tempfile.TemporaryDirectory(prefix=f"fastflow-warmup-{name}-") as tmp:
        env = local_env(
            run_id=f"warmup-{uuid.uuid4()}", pipeline_name=name, user_env={}, home=Path(tmp)
        )
        steps = [
            (
                "resolving requirements (uv pip compile)",
                [uv_binary(), "pip", "compile", "--python", local_python(python_version)]
                + [
                    str(pipeline_dir / "requirements.txt"),
                    "-o",
                    str(Path(tmp) / "requirements.lock"),
                ],
            ),
            (
                "installing requirements (uv run --with-requirements)",
                local_uv_command(
                    pipeline_dir=pipeline_dir, python_version=python_version, requirements=True
                )
                + ["python", "-c", "pass"],
            ),
        ]
        deadline = time.monotonic() + timeout
        for what, command in steps:
            try:
                done = subprocess.run(
                    command,
                    cwd=tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=max(deadline - time.monotonic(), 1),
                )
            except subprocess.TimeoutExpired:
                return f"{what} timed out after {timeout:g} s"
            except OSError as exc:
                raise InfrastructureError(f"{what} could not start: {exc}") from exc
            if done.returncode != 0:
                output = _tail(done.stdout + done.stderr)
                return f"{what} failed (exit code {done.returncode}):\n{output}"
    return ""


def _warm_in_docker(
    executor: Executor, name: str, pipeline_dir: Path, python_version: str, timeout: float
) -> str:
    from runs_app.engine.docker_executor import APP_DIR, DOCKER_ERRORS, uv_command

    image = executor.ensure_image(python_version)
    spec = _spec(name, pipeline_dir, python_version)
    lock = "/tmp/requirements.lock"  # noqa: S108 - the container's private tmpfs
    steps = [
        (
            "resolving requirements (uv pip compile)",
            ["uv", "pip", "compile", "--python", python_version]
            + [f"{APP_DIR}/requirements.txt", "-o", lock],
        ),
        (
            "installing requirements (uv run --with-requirements)",
            uv_command(
                python_version=python_version, requirements=True, program=["python", "-c", "pass"]
            ),
        ),
    ]
    deadline = time.monotonic() + timeout
    for what, command in steps:
        # Not labelled fastflow.managed=1: reconciliation must not take it for an orphan run.
        options = executor.container_options(
            spec, image=image, command=command, labels={WARMUP_LABEL: name}
        )
        options["labels"].pop("fastflow.managed", None)
        container = None
        try:
            container = executor.client.containers.create(**options)
            container.start()
            try:
                result = container.wait(timeout=max(deadline - time.monotonic(), 1))
            except requests.exceptions.RequestException:
                return f"{what} timed out after {timeout:g} s"
            output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"{what}: Docker engine error: {exc}") from exc
        finally:
            if container is not None:
                with contextlib.suppress(*DOCKER_ERRORS):
                    container.remove(force=True)
        if result.get("StatusCode") != 0:
            return f"{what} failed (exit code {result.get('StatusCode')}):\n{_tail(output)}"
    return ""
