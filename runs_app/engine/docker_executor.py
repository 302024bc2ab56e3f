"""Runs a pipeline in a locked-down, throwaway Docker container.

    docker run --user 65534:65534 --read-only --tmpfs /tmp --cap-drop ALL
      --security-opt no-new-privileges --pids-limit N [--memory M --memory-swap M] [--cpus C]
      -v <pipeline>:/app:ro -v <uv cache>/docker:/cache/uv
      [-v <ca bundle>:/etc/ssl/certs/fastflow-ca.pem:ro]      (sources: see hostpaths.py)
      --label fastflow.managed=1 --label fastflow.run_id=… --network <net> -w /app <image>
      uv run --no-project --python X.Y [--with-requirements /app/requirements.txt]
        python -u -c <wrapper>

The engine's own variables (see `engine_env`) win over the run's environment: a pipeline must
not be able to point uv at another cache or make it download interpreters.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import requests
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.models.images import Image
from docker.types import Mount

from runs_app.engine import wrapper
from runs_app.engine.base import Execution, Executor, InfrastructureError, RunSpec
from runs_app.engine.hostpaths import HostPaths
from runs_app.engine.logstream import (
    LogWriter,
    note_setup_failure,
    noted_setup_duration,
    resume_point,
)
from runs_app.engine.metrics import DockerStatsSampler, MetricsRecorder
from runs_app.engine.uvcache import (
    WARM_INSTALL,
    WARM_RESOLVE,
    is_warm,
    mark_warm,
    uv_cache_dir,
    warm_stamp,
    warm_step_failed,
)
from runs_app.logs import parse_timestamp
from runs_app.outcome import Outcome, classify_exit, format_bytes

logger = logging.getLogger(__name__)
# docker-py lets connection failures through as plain requests exceptions.
DOCKER_ERRORS = (DockerException, requests.exceptions.RequestException)

APP_DIR = "/app"
CACHE_DIR = "/cache/uv"
CONTAINER_TMP = "/tmp"  # noqa: S108 - a private tmpfs inside the container
CA_PATH = "/etc/ssl/certs/fastflow-ca.pem"
LABEL_MANAGED = "fastflow.managed"
LABEL_RUN_ID = "fastflow.run_id"
LABEL_PIPELINE = "fastflow.pipeline"
LABEL_SCOPE = "fastflow.scope"
LABEL_MARKER = "fastflow.marker"
LABEL_OFFLINE = "fastflow.offline"
LABEL_WARMUP = "fastflow.warmup"  # a cache warm-up container, never a run
UV_VERSION_LABEL = "org.fastflow.runner.uv-version"
OFFLINE_HINT = (
    "requirements were resolved offline from the warm cache; if packages are missing, "
    "run the cache warm-up again"
)
NO_NETWORK_HINT = (
    "this pipeline runs without a network (network 'none'): its requirements can only come "
    "from the warm cache, and no cache warm-up of these requirements has succeeded yet (see the "
    "pipeline's warm-up status; warm-ups run on FASTFLOW_WARMUP_NETWORK)"
)
OFFLINE_WARM = "1"
OFFLINE_NO_NETWORK = "no-network"  # offline because the run has no network, cache not warm
WAKE_INTERVAL = 0.25  # how often wait() looks at cancel/timeout when nothing else wakes it
DRAIN_TIMEOUT = 10.0  # how long to wait for the last log lines after the container exited
RUNNING_STATES = {"running", "paused", "restarting"}
EXITED_STATES = {"exited", "dead"}  # final: State.ExitCode and State.OOMKilled are settled

_uv_versions: dict[str, str] = {}
_uv_versions_lock = threading.Lock()


def image_name(python_version: str) -> str:
    return settings.FASTFLOW_RUNNER_IMAGE.format(python_version=python_version)


def installation_scope(data_dir: str | None = None) -> str:
    """Labels containers with the installation they belong to (by its data dir as the Docker
    host sees it), so that an engine never lists or removes containers of another Fast-Flow
    sharing the Docker daemon — engines in containers all see their data dir as /data."""
    where = data_dir or str(Path(settings.DATA_DIR).resolve())
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def engine_env(*, run_id: str, pipeline_name: str) -> dict[str, str]:
    env = {
        "HOME": CONTAINER_TMP,
        "TMPDIR": CONTAINER_TMP,
        "PYTHONUNBUFFERED": "1",
        "UV_CACHE_DIR": CACHE_DIR,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "FASTFLOW_RUN_ID": run_id,
        "FASTFLOW_PIPELINE": pipeline_name,
    }
    if settings.FASTFLOW_RUNNER_CA_BUNDLE:
        env["SSL_CERT_FILE"] = CA_PATH
        env["REQUESTS_CA_BUNDLE"] = CA_PATH
    return env


def uv_command(
    *, python_version: str, requirements: bool, program: list[str], offline: bool = False
) -> list[str]:
    command = ["uv", "run", "--no-project", "--python", python_version]
    if requirements:
        command += ["--with-requirements", f"{APP_DIR}/requirements.txt"]
    if offline:
        command.append("--offline")
    return [*command, *program]


def warmup_network() -> str:
    """Warm-ups download packages: FASTFLOW_WARMUP_NETWORK, else the runs' default network,
    or bridge when runs have none (a `none` run resolves offline from what the warm-up cached)."""
    if settings.FASTFLOW_WARMUP_NETWORK:
        return settings.FASTFLOW_WARMUP_NETWORK
    default = settings.FASTFLOW_RUNNER_NETWORK
    return default if default != "none" else "bridge"


def _warmup_spec(name: str, pipeline_dir: Path, python_version: str) -> RunSpec:
    """A stand-in run for building a warm-up container (it writes no log or metrics)."""
    return RunSpec(
        network=warmup_network(),
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


class DockerExecutor(Executor):
    name = "docker"
    survives_engine_restart = True  # containers keep running; the next engine re-attaches

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        # Bind-mount sources as the daemon sees them (differ when the engine is containerised).
        self.host_paths = HostPaths(self.inspect_container)

    def scope(self) -> str:
        """This installation's `fastflow.scope` label (see installation_scope)."""
        return installation_scope(self.host_paths.source(settings.DATA_DIR))

    def inspect_container(self, ident: str) -> dict[str, Any]:
        """A container's attributes; LookupError when the daemon has no such container."""
        try:
            return self.client.api.inspect_container(ident)
        except NotFound:
            raise LookupError(ident) from None
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker engine error inspecting {ident}: {exc}") from exc

    @property
    def client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> docker.DockerClient:
        host = settings.FASTFLOW_DOCKER_HOST
        # Each running container holds two streaming connections (logs, stats).
        pool = 2 * settings.FASTFLOW_MAX_CONCURRENT_RUNS + 10
        try:
            if host:
                client = docker.DockerClient(base_url=host, max_pool_size=pool)
            else:
                client = docker.from_env(max_pool_size=pool)
            client.ping()
        except DOCKER_ERRORS as exc:
            where = host or "the default socket (DOCKER_HOST or /var/run/docker.sock)"
            raise InfrastructureError(f"Docker engine not reachable at {where}: {exc}") from exc
        return client

    def check(self) -> None:
        try:
            self.client.ping()
        except DOCKER_ERRORS as exc:
            with self._client_lock:
                self._client = None  # reconnect next time
            where = settings.FASTFLOW_DOCKER_HOST or "the default socket"
            raise InfrastructureError(f"Docker engine not reachable at {where}: {exc}") from exc

    def ensure_image(self, python_version: str) -> Image:
        name = image_name(python_version)
        try:
            return self.client.images.get(name)
        except ImageNotFound:
            pass
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker engine error looking up {name}: {exc}") from exc
        hint = "set FASTFLOW_RUNNER_IMAGE to an image that exists, or build/pull it"
        if settings.TESTING:
            # Tests never reach out to a registry behind the developer's back.
            raise InfrastructureError(f"runner image {name} not found locally ({hint})")
        logger.info("pulling runner image %s", name)
        try:
            return self.client.images.pull(name)
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(
                f"runner image {name} not found locally and pulling it failed: {exc} ({hint})"
            ) from exc

    def container_options(
        self, spec: RunSpec, *, image: Image, command: list[str], labels: dict[str, str]
    ) -> dict[str, Any]:
        """The locked-down `containers.create()` arguments (also used by the cache warm-up)."""
        # Mount objects, not "src:dst:mode" strings: a folder name may contain a colon.
        source = self.host_paths.source
        mounts = [
            Mount(APP_DIR, source(spec.pipeline_dir), type="bind", read_only=True),
            Mount(CACHE_DIR, source(uv_cache_dir(self.name, world_writable=True)), type="bind"),
        ]
        if settings.FASTFLOW_RUNNER_CA_BUNDLE:
            ca = Path(settings.FASTFLOW_RUNNER_CA_BUNDLE)
            if not ca.is_file():
                raise InfrastructureError(f"FASTFLOW_RUNNER_CA_BUNDLE: {ca} is not a file")
            mounts.append(Mount(CA_PATH, source(ca), type="bind", read_only=True))
        env = {k: v for k, v in spec.env.items() if k != "PATH"}
        env.update(engine_env(run_id=spec.run_id, pipeline_name=spec.pipeline_name))
        options: dict[str, Any] = {
            "image": image.id,
            "command": command,
            "user": settings.FASTFLOW_RUNNER_USER,
            "read_only": True,
            "tmpfs": {CONTAINER_TMP: f"size={settings.FASTFLOW_RUNNER_TMPFS_SIZE},mode=1777"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": settings.FASTFLOW_RUNNER_PIDS_LIMIT,
            "working_dir": APP_DIR,
            "mounts": mounts,
            "environment": env,
            "network_mode": spec.network or settings.FASTFLOW_RUNNER_NETWORK,
            "labels": {LABEL_MANAGED: "1", LABEL_SCOPE: self.scope(), **labels},
            "stdin_open": False,
            "tty": False,
        }
        if spec.mem_hard_limit:
            options["mem_limit"] = int(spec.mem_hard_limit)
            options["memswap_limit"] = int(spec.mem_hard_limit)  # no swap: the limit is real
        if spec.cpu_hard_limit:
            options["nano_cpus"] = int(spec.cpu_hard_limit * 1e9)
        return options

    def warm_stamp(self, spec: RunSpec, image: Image) -> Path | None:
        return warm_stamp(
            self.name,
            pipeline_dir=spec.pipeline_dir,
            python_version=spec.python_version,
            runtime_id=image.id,
        )

    def start(self, spec: RunSpec) -> DockerExecution:
        image = self.ensure_image(spec.python_version)
        marker = wrapper.new_marker()
        offline = ""
        if spec.has_requirements and is_warm(self.warm_stamp(spec, image)):
            offline = OFFLINE_WARM
        elif spec.has_requirements and spec.network == "none":
            # Nothing to download from without a network: fail fast on what the cache lacks
            # instead of waiting for uv's connection attempts to time out.
            offline = OFFLINE_NO_NETWORK
        command = uv_command(
            python_version=spec.python_version,
            requirements=spec.has_requirements,
            program=["python", "-u", "-c", wrapper.wrapper_code(marker=marker, app_dir=APP_DIR)],
            offline=bool(offline),
        )
        labels = {LABEL_RUN_ID: spec.run_id, LABEL_PIPELINE: spec.pipeline_name}
        labels[LABEL_MARKER] = marker
        labels[LABEL_OFFLINE] = offline or "0"
        options = self.container_options(spec, image=image, command=command, labels=labels)
        container = None
        try:
            container = self.client.containers.create(**options)
            container.start()
        except DOCKER_ERRORS as exc:
            if container is not None:
                _remove(container)
            raise InfrastructureError(f"could not start the run's container: {exc}") from exc
        return DockerExecution(spec=spec, executor=self, container=container, image=image)

    def warm(
        self, *, pipeline_name: str, pipeline_dir: Path, python_version: str, timeout: float
    ) -> str:
        """The warm-up steps in throwaway containers of the runner image, with a run's mounts
        and limits (the pipeline folder read-only, the lock file in the container's tmpfs)."""
        image = self.ensure_image(python_version)
        spec = _warmup_spec(pipeline_name, Path(pipeline_dir), python_version)
        # Of the requirements as they are now: an edit during the warm-up is not marked warm.
        stamp = self.warm_stamp(spec, image)
        lock = f"{CONTAINER_TMP}/requirements.lock"
        steps = [
            (
                WARM_RESOLVE,
                ["uv", "pip", "compile", "--python", python_version]
                + [f"{APP_DIR}/requirements.txt", "-o", lock],
            ),
            (
                WARM_INSTALL,
                uv_command(
                    python_version=python_version,
                    requirements=True,
                    program=["python", "-c", "pass"],
                ),
            ),
        ]
        deadline = time.monotonic() + timeout
        for what, command in steps:
            failure = self._warm_step(
                spec, image, what, command, max(deadline - time.monotonic(), 1), timeout
            )
            if failure:
                return failure
        mark_warm(stamp)
        return ""

    def _warm_step(
        self,
        spec: RunSpec,
        image: Image,
        what: str,
        command: list[str],
        wait: float,
        timeout: float,
    ) -> str:
        # Not labelled fastflow.managed=1: reconciliation must not take it for an orphan run.
        options = self.container_options(
            spec, image=image, command=command, labels={LABEL_WARMUP: spec.pipeline_name}
        )
        options["labels"].pop(LABEL_MANAGED, None)
        container = None
        try:
            container = self.client.containers.create(**options)
            container.start()
            try:
                result = container.wait(timeout=wait)
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
            return warm_step_failed(what, result.get("StatusCode"), output)
        return ""

    def reattach(self, spec: RunSpec, handle_id: str) -> DockerExecution | None:
        try:
            container = self.client.containers.get(handle_id)
        except NotFound:
            return None
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker engine error while re-attaching: {exc}") from exc
        if container.status == "created":
            # The engine died between create and start: the run never began.
            _remove(container)
            return None
        try:
            image = self.client.images.get(container.attrs["Image"])
        except DOCKER_ERRORS:
            image = None
        return DockerExecution(
            spec=spec, executor=self, container=container, image=image, resume=True
        )

    def running_handles(self) -> dict[str, str]:
        filters = {"label": [f"{LABEL_MANAGED}=1", f"{LABEL_SCOPE}={self.scope()}"]}
        try:
            containers = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker engine error while listing runs: {exc}") from exc
        return {c.labels.get(LABEL_RUN_ID, ""): c.id for c in containers}

    def remove_orphan(self, handle_id: str) -> None:
        try:
            self.client.api.remove_container(handle_id, force=True)
        except NotFound:
            pass
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"could not remove container {handle_id}: {exc}") from exc

    def uv_version(self, image: Image | None) -> str:
        """The image's uv version: from its label when it has one, else `uv --version` in a
        throwaway container, once per image id and engine process."""
        if image is None:
            return ""
        if image.labels.get(UV_VERSION_LABEL):
            return image.labels[UV_VERSION_LABEL]
        with _uv_versions_lock:
            if image.id not in _uv_versions:
                try:
                    output = self.client.containers.run(
                        image.id,
                        ["uv", "--version"],
                        remove=True,
                        network_mode="none",
                        user=settings.FASTFLOW_RUNNER_USER,
                        read_only=True,
                        cap_drop=["ALL"],
                        labels={LABEL_MANAGED: "0"},
                    )
                    # "uv 0.13.9 (abc123 2026-11-01)" → "0.13.9"
                    _uv_versions[image.id] = output.decode().split()[1]
                except (*DOCKER_ERRORS, IndexError) as exc:
                    logger.warning("could not read uv version of %s: %s", image.id, exc)
                    return ""
            return _uv_versions[image.id]


class DockerExecution(Execution):
    def __init__(
        self,
        *,
        spec: RunSpec,
        executor: DockerExecutor,
        container: Container,
        image: Image | None,
        resume: bool = False,
    ) -> None:
        super().__init__(spec=spec, handle_id=container.id)
        self._executor = executor
        self._container = container
        self._image = image
        self._resume = resume
        self._marker = container.labels.get(LABEL_MARKER, "")
        self._offline = container.labels.get(LABEL_OFFLINE, "0")
        self._wake = threading.Event()
        self._stop_sampling = threading.Event()
        self._log_error = ""
        # The container's State once an inspect saw it exited (set by whichever thread saw it).
        self._exit_state: dict[str, Any] | None = None
        self._writers: tuple[LogWriter, MetricsRecorder] | None = None
        self._stream: Any = None  # the Docker log stream being followed

    def abandon(self) -> None:
        super().abandon()
        writers = self._writers
        if writers is not None:
            self._release(*writers)
        self._wake.set()

    def _release(self, log: LogWriter, metrics: MetricsRecorder) -> None:
        """No more writes: the container's new owner writes the log and metrics."""
        log.abandon()
        metrics.close()
        self._stop_sampling.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()  # unblocks the follower; it leaves the container alone
            except Exception:  # noqa: BLE001 - it ends with the container anyway
                logger.debug("closing the log stream of %s failed", self._container.id)

    def cancel(self) -> None:
        super().cancel()
        self._wake.set()

    def wait_for_outcome(self) -> Outcome:
        spec = self.spec
        since, skip = resume_point(spec.log_file) if self._resume else (None, 0)
        try:
            self._container.reload()
            started_at = parse_timestamp(self._container.attrs["State"]["StartedAt"])
        except DOCKER_ERRORS as exc:
            return self._lost(exc)
        log = LogWriter(
            spec.log_file,
            mask_values=spec.mask_values,
            max_bytes=spec.log_max_bytes,
            marker=self._marker,
            # After a restart the "environment ready" note may already be in the file.
            started_at=None if noted_setup_duration(spec.log_file) is not None else started_at,
        )
        metrics = MetricsRecorder(
            spec.metrics_file,
            log=log,
            cpu_soft_limit=spec.cpu_soft_limit,
            mem_soft_limit=spec.mem_soft_limit,
        )
        self._writers = (log, metrics)
        if self.abandoned.is_set():  # abandoned before the writers existed
            self._release(log, metrics)
        outcome = Outcome(exit_code=None)
        try:
            # Daemon threads: an engine shutting down leaves running containers alone and must
            # not wait for them (the next engine re-attaches).
            follower = threading.Thread(
                target=self._follow_logs,
                args=(log, since, skip),
                name=f"logs-{spec.run_id}",
                daemon=True,
            )
            follower.start()
            threading.Thread(
                target=self._sample, args=(metrics,), name=f"stats-{spec.run_id}", daemon=True
            ).start()
            self._supervise(log, outcome, started_at, follower)
            if self.abandoned.is_set():
                outcome.error = "abandoned: another engine took the run over"
                return outcome
            state = None if follower.is_alive() else self._exit_state
            if state is None:
                # Stopped on cancel/timeout, or its state is not known yet: ask Docker.
                result = self._container.wait()
                follower.join(DRAIN_TIMEOUT)
                self._container.reload()
                state = self._container.attrs["State"]
                outcome.exit_code = int(result.get("StatusCode", state.get("ExitCode", -1)))
            else:
                # The usual end: the log stream ended and the follower's inspect saw the
                # container exited. Its State is final, no further round trip is needed.
                outcome.exit_code = int(state.get("ExitCode", -1))
            outcome.oom_killed = bool(state.get("OOMKilled")) or (
                outcome.exit_code == 137
                and bool(spec.mem_hard_limit)
                and not (outcome.timed_out or outcome.cancelled)
            )
            if log.ready_at is not None:
                outcome.setup_duration = max((log.ready_at - started_at).total_seconds(), 0.0)
            elif self._resume:
                outcome.setup_duration = noted_setup_duration(spec.log_file)
            if outcome.oom_killed:
                limit = format_bytes(spec.mem_hard_limit) if spec.mem_hard_limit else "its"
                log.note(f"out of memory: the container was killed at its {limit} memory limit")
            if outcome.exit_code and log.ready_at is None and self._offline != "0":
                log.note(NO_NETWORK_HINT if self._offline == OFFLINE_NO_NETWORK else OFFLINE_HINT)
            if self._log_error:
                log.note(f"log stream from Docker interrupted: {self._log_error}")
            outcome.error = classify_exit(
                outcome, timeout=spec.timeout, mem_limit=spec.mem_hard_limit
            )
            note_setup_failure(outcome, log)
        except DOCKER_ERRORS as exc:
            outcome.error = f"Docker engine error: {exc}"
            log.note(outcome.error)
        finally:
            self._stop_sampling.set()
            log.close()
            metrics.close()
        outcome.peak_memory_bytes = metrics.peak_memory_bytes
        outcome.uv_version = self._executor.uv_version(self._image)
        return outcome

    def cleanup(self) -> None:
        """Remove the container: after the engine recorded the outcome, since removing takes
        a daemon round trip or more (an engine that dies in between leaves an exited container
        of a finished run, which reconcile removes)."""
        self._stop_sampling.set()
        if not self.abandoned.is_set():  # else its new owner removes it
            _remove(self._container)

    def _lost(self, exc: Exception) -> Outcome:
        """The container cannot be inspected any more (removed behind our back, daemon gone)."""
        error = f"Docker engine error: {exc}"
        log = LogWriter(self.spec.log_file, max_bytes=self.spec.log_max_bytes)
        log.note(error)
        log.close()
        return Outcome(exit_code=None, error=error)

    def _supervise(
        self, log: LogWriter, outcome: Outcome, started_at: datetime, follower: threading.Thread
    ) -> None:
        """Wait until the container exits, stopping it on cancel or timeout."""
        deadline = None
        if self.spec.timeout:
            deadline = started_at.timestamp() + self.spec.timeout
        while True:
            if self.abandoned.is_set():
                return  # the container is another engine's now: leave it running
            if self.cancel_event.is_set():
                grace = settings.FASTFLOW_CANCEL_GRACE_SECONDS
                log.note(f"cancelled: stopping the container (SIGTERM, SIGKILL after {grace:g} s)")
                outcome.cancelled = True
                self._container.stop(timeout=math.ceil(grace))
                return
            remaining = deadline - time.time() if deadline else WAKE_INTERVAL
            if remaining <= 0:
                try:
                    self._container.kill()
                except APIError as exc:
                    if exc.status_code == 409:  # it ended on its own meanwhile
                        return
                    raise
                log.note(f"timeout after {self.spec.timeout:g} s: container killed")
                outcome.timed_out = True
                return
            if follower.is_alive():
                self._wake.wait(min(remaining, WAKE_INTERVAL))
            elif self._exit_state is None and self._still_running():
                # The log stream failed but the container runs on: keep enforcing the limits.
                self.cancel_event.wait(min(remaining, WAKE_INTERVAL))
            else:
                return

    def _still_running(self) -> bool:
        try:
            self._container.reload()
        except DOCKER_ERRORS:
            return False
        status = self._container.status
        if status in EXITED_STATES:
            self._exit_state = dict(self._container.attrs.get("State") or {})
        return status in RUNNING_STATES

    def _follow_logs(self, log: LogWriter, since: datetime | None, skip: int) -> None:
        """Copy the container's output to the log until it exits.

        Docker timestamps every line, and `since` + `skip` resume exactly after the last line
        already in the file: a re-attach asks for lines from that line's millisecond and drops
        the `skip` lines of that millisecond that were written before.
        """
        try:
            while True:
                last, count = self._copy_stream(log, since, skip)
                if self.abandoned.is_set() or not self._still_running():
                    return
                # The stream broke while the container still runs (daemon hiccup): resume.
                since, skip = last or since, count if last else skip
        except Exception as exc:
            if self.abandoned.is_set():
                return  # the stream was closed under it on purpose
            if not isinstance(exc, DOCKER_ERRORS):
                raise
            self._log_error = str(exc)
        finally:
            self._wake.set()

    def _copy_stream(
        self, log: LogWriter, since: datetime | None, skip: int
    ) -> tuple[datetime | None, int]:
        kwargs: dict[str, Any] = {"stream": True, "follow": True, "timestamps": True}
        if since is not None:
            # A millisecond early, so float rounding never loses a line; older ones are dropped.
            kwargs["since"] = since.timestamp() - 0.001
        last: datetime | None = None
        count = 0
        self._stream = self._container.logs(**kwargs)
        if self.abandoned.is_set():
            self._stream.close()
        for frame in self._stream:
            if self.abandoned.is_set():
                break
            stamp, _, data = frame.partition(b" ")
            try:
                at = parse_timestamp(stamp.decode())
            except ValueError:
                at, data = datetime.now(UTC), frame
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
            is_marker = bool(self._marker) and data.startswith(self._marker.encode())
            if not is_marker:  # counted like resume_point counts the file: pipeline lines only
                count = count + 1 if at == last else 1
                last = at
            if since is not None and at < since:
                continue
            if skip and since is not None and at == since and not is_marker:
                skip -= 1
                continue
            log.feed(data, at)
        return last, count

    def _sample(self, metrics: MetricsRecorder) -> None:
        sampler = DockerStatsSampler(metrics, interval=settings.FASTFLOW_METRICS_INTERVAL_SECONDS)
        try:
            readings = self._executor.client.api.stats(self._container.id, stream=True, decode=True)
            sampler.consume(readings, self._stop_sampling)
        except DOCKER_ERRORS as exc:
            # The stream ends with an error when the container is removed; that is normal.
            logger.debug("stats stream of %s ended: %s", self._container.id, exc)
        except Exception:
            logger.exception("metrics sampling of %s failed", self._container.id)


def _remove(container: Container) -> None:
    try:
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            logger.warning("could not remove container %s: %s", container.id, exc)
    except DOCKER_ERRORS as exc:
        logger.warning("could not remove container %s: %s", container.id, exc)
