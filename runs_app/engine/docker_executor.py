"""Runs a pipeline in a locked-down, throwaway Docker container.

    docker run --user 65534:65534 --read-only --tmpfs /tmp --cap-drop ALL
      --security-opt no-new-privileges --pids-limit N [--memory M --memory-swap M] [--cpus C]
      -v <pipeline>:/app:ro [-v <uv cache>/docker-envs/<key>:/venv:ro]
      -v <run output dir>:/fastflow
      [-v <ca bundle>:/etc/ssl/certs/fastflow-ca.pem:ro]      (sources: see hostpaths.py)
      --label fastflow.managed=1 --label fastflow.run_id=… --network <net> -w /app <image>
      /venv/bin/python -u -c <wrapper>          (requirements, environment prepared)
      python3.X -u -c <wrapper>                 (no requirements)
      uv run --no-project --python X.Y --with-requirements /app/requirements.txt
        [--with <package> ...] python -u -c <wrapper>
                                                (requirements not prepared yet: a private cache
                                                 in the run's /tmp)

A notebook pipeline runs `-u -c <notebook runner> <config>` instead of the wrapper, in an
environment that also holds the runner's packages (`RunSpec.extra_requirements`).

No run mounts the shared uv cache: only warm-up containers (`warm`) write it, and build the
environments runs mount read-only (see `uvcache.py`). The engine's own variables (see
`engine_env`) win over the run's environment: a pipeline must not be able to point uv at
another cache or make it download interpreters.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import struct
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
from docker.types.daemon import CancellableStream

from runs_app.engine import wrapper
from runs_app.engine.base import (
    Execution,
    ExecutionNeverStarted,
    Executor,
    InfrastructureError,
    RunSpec,
)
from runs_app.engine.docker_pool import (
    LABEL_POOL,
    UNUSED_EXIT_CODE,
    HandOverFailed,
    WarmPool,
    parse_run_container_name,
    pool_key,
)
from runs_app.engine.hostpaths import HostPaths
from runs_app.engine.logstream import LogWriter, note_setup_failure, noted_ready, resume_point
from runs_app.engine.metrics import (
    DockerStatsSampler,
    MetricsRecorder,
    outcome_complete,
    run_writers,
)
from runs_app.engine.outputs import MOUNT_POINT, ROUTE_FILE, output_dir_prepare
from runs_app.engine.uvcache import (
    COLD_HINT,
    COLD_NOTE,
    WARM_CREATE,
    WARM_INSTALL,
    WARM_RESOLVE,
    cold_with_args,
    env_build_dir,
    env_key,
    env_publish,
    env_ready,
    env_remove,
    uv_cache_dir,
    warm_install_args,
    warm_step_failed,
)
from runs_app.logs import STDERR, STDOUT, parse_timestamp
from runs_app.outcome import Outcome, format_bytes

logger = logging.getLogger(__name__)
# docker-py lets connection failures through as plain requests exceptions.
DOCKER_ERRORS = (DockerException, requests.exceptions.RequestException)

APP_DIR = "/app"
CACHE_DIR = "/cache/uv"  # the shared cache: mounted in warm-up containers only
ENV_DIR = "/venv"  # a prepared environment: read-only in runs, the build dir in warm-ups
CONTAINER_TMP = "/tmp"  # noqa: S108 - a private tmpfs inside the container
RUN_UV_CACHE = f"{CONTAINER_TMP}/uv-cache"  # a run's own cache (cold runs), gone with the run
CA_PATH = "/etc/ssl/certs/fastflow-ca.pem"
LABEL_MANAGED = "fastflow.managed"
LABEL_RUN_ID = "fastflow.run_id"
LABEL_PIPELINE = "fastflow.pipeline"
LABEL_SCOPE = "fastflow.scope"
LABEL_MARKER = "fastflow.marker"  # the ready line of containers started before 0.x (random)
LABEL_ENV = "fastflow.env"  # "prepared" (a warm-up's environment), "cold"…, or "none"
ENV_COLD = "cold"  # requirements not prepared: installed for this run into its own /tmp cache
ENV_COLD_OFFLINE = "cold-offline"  # ... but the run has no network: they cannot be installed
LABEL_WARMUP = "fastflow.warmup"  # a cache warm-up container, never a run
UV_VERSION_LABEL = "org.fastflow.runner.uv-version"
STREAMS = {1: STDOUT, 2: STDERR}  # Docker's stream ids in its multiplexed log frames
NO_NETWORK_HINT = (
    "this pipeline runs without a network (network 'none'): its requirements can only come "
    "from the environment a cache warm-up prepares, and none has been prepared for these "
    "requirements yet (see the pipeline's warm-up status; warm-ups run on "
    "FASTFLOW_WARMUP_NETWORK)"
)
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


def engine_env(*, run_id: str, pipeline_name: str, uv_cache: str = RUN_UV_CACHE) -> dict[str, str]:
    env = {
        "HOME": CONTAINER_TMP,
        "TMPDIR": CONTAINER_TMP,
        "PYTHONUNBUFFERED": "1",
        "UV_CACHE_DIR": uv_cache,
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
    *,
    python_version: str,
    requirements: bool,
    program: list[str],
    extra_requirements: tuple[str, ...] = (),
    offline: bool = False,
) -> list[str]:
    command = ["uv", "run", "--no-project", "--python", python_version]
    if offline:
        command.append("--offline")
    command += cold_with_args(
        requirements=f"{APP_DIR}/requirements.txt" if requirements else None,
        extra_requirements=extra_requirements,
    )
    return [*command, *program]


def warmup_network() -> str:
    """Warm-ups download packages: FASTFLOW_WARMUP_NETWORK, else the runs' default network,
    or bridge when runs have none (a `none` run uses the environment the warm-up prepared)."""
    if settings.FASTFLOW_WARMUP_NETWORK:
        return settings.FASTFLOW_WARMUP_NETWORK
    default = settings.FASTFLOW_RUNNER_NETWORK
    return default if default != "none" else "bridge"


def image_path(image: Image) -> str:
    """The image's own PATH (a run's PATH puts its environment's bin/ in front of it)."""
    for item in image.attrs.get("Config", {}).get("Env") or []:
        if item.startswith("PATH="):
            return item.removeprefix("PATH=")
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_program(spec: RunSpec) -> list[str]:
    """The interpreter's arguments of a run in a container (Docker or Kubernetes): the wrapper
    starting main.py, or the notebook runner (writing to the output directory at MOUNT_POINT)."""
    if spec.notebook:
        return wrapper.notebook_program(
            app_dir=APP_DIR,
            output_dir=MOUNT_POINT if spec.output_dir else None,
            cells=spec.cells,
            python_version=spec.python_version,
        )
    code = wrapper.wrapper_code(app_dir=APP_DIR, python_version=spec.python_version)
    return ["-u", "-c", code]


def warmup_spec(
    name: str, pipeline_dir: Path, python_version: str, extra_requirements: tuple[str, ...] = ()
) -> RunSpec:
    """A stand-in run for building a warm-up container or Job (it writes no log or metrics)."""
    return RunSpec(
        network=warmup_network(),
        run_id=f"warmup-{uuid.uuid4()}",
        pipeline_name=name,
        pipeline_dir=pipeline_dir,
        has_requirements=(pipeline_dir / "requirements.txt").is_file(),
        extra_requirements=extra_requirements,
        python_version=python_version,
        env={},
        mask_values=(),
        log_file=Path(tempfile.gettempdir()) / "unused.log",
        metrics_file=Path(tempfile.gettempdir()) / "unused.jsonl",
    )


def warmup_steps(spec: RunSpec) -> list[tuple[str, list[str]]]:
    """The warm-up's steps in a container (Docker or Kubernetes), each (what, command): resolve
    requirements.txt (when there is one), create the environment, install into it."""
    python_version = spec.python_version
    requirements = f"{APP_DIR}/requirements.txt" if spec.has_requirements else None
    install = warm_install_args(
        python=f"{ENV_DIR}/bin/python",
        requirements=requirements,
        extra_requirements=spec.extra_requirements,
    )
    steps = [
        (WARM_CREATE, ["uv", "venv", "--relocatable", "--python", python_version, ENV_DIR]),
        (WARM_INSTALL, ["uv", *install]),
    ]
    if requirements:
        resolve = ["uv", "pip", "compile", "--python", python_version, requirements]
        steps.insert(0, (WARM_RESOLVE, [*resolve, "-o", f"{CONTAINER_TMP}/requirements.lock"]))
    return steps


class DockerExecutor(Executor):
    name = "docker"
    survives_engine_restart = True  # containers keep running; the next engine re-attaches
    enforced_limits = frozenset({"memory_bytes", "cpus", "pids", "tmp_bytes"})

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        # Bind-mount sources as the daemon sees them (differ when the engine is containerised).
        self.host_paths = HostPaths(self.inspect_container)
        self.pool = WarmPool(
            client=lambda: self.client,
            scope=self.scope,
            mount_source=self.host_paths.source,
            output_mount=lambda source: Mount(MOUNT_POINT, source, type="bind"),
        )

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
        # Each running container holds two streaming connections (logs, stats), each idle
        # warm-pool member one (its attached stdin).
        pool = 2 * settings.FASTFLOW_MAX_CONCURRENT_RUNS + settings.FASTFLOW_DOCKER_POOL_SIZE + 10
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
        self.pool.ensure_started()  # sweeps what a dead engine's pool left, then refills

    def close(self) -> None:
        self.pool.close()

    def ensure_image(self, python_version: str) -> Image:
        name = image_name(python_version)
        try:
            return self.client.images.get(name)
        except ImageNotFound:
            pass
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker engine error looking up {name}: {exc}") from exc
        hint = "set FASTFLOW_RUNNER_IMAGE to an image that exists, or build/pull it"
        if not settings.FASTFLOW_RUNNER_PULL:
            # Off in the test suite: tests never reach out to a registry behind anyone's back.
            raise InfrastructureError(f"runner image {name} not found locally ({hint})")
        logger.info("pulling runner image %s", name)
        try:
            return self.client.images.pull(name)
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(
                f"runner image {name} not found locally and pulling it failed: {exc} ({hint})"
            ) from exc

    def container_options(
        self,
        spec: RunSpec,
        *,
        image: Image,
        command: list[str],
        labels: dict[str, str],
        mounts: list[Mount] = (),
        env: dict[str, str] | None = None,
        tmp_exec: bool = False,
    ) -> dict[str, Any]:
        """The locked-down `containers.create()` arguments (also used by the cache warm-up).

        `mounts` come on top of the pipeline folder (read-only at /app) and the CA bundle;
        `env` on top of the engine's variables (the environment's PATH, the warm-up's cache).
        `/tmp` is `noexec` (Docker's default for a tmpfs) unless `tmp_exec`: a cold run's
        packages live in its own cache there, and compiled ones (`.so`) must be mapped
        executable to import."""
        # Mount objects, not "src:dst:mode" strings: a folder name may contain a colon.
        source = self.host_paths.source
        all_mounts = [
            Mount(APP_DIR, source(spec.pipeline_dir), type="bind", read_only=True),
            *mounts,
        ]
        if settings.FASTFLOW_RUNNER_CA_BUNDLE:
            ca = Path(settings.FASTFLOW_RUNNER_CA_BUNDLE)
            if not ca.is_file():
                raise InfrastructureError(f"FASTFLOW_RUNNER_CA_BUNDLE: {ca} is not a file")
            all_mounts.append(Mount(CA_PATH, source(ca), type="bind", read_only=True))
        environment = {k: v for k, v in spec.env.items() if k != "PATH"}
        environment.update(engine_env(run_id=spec.run_id, pipeline_name=spec.pipeline_name))
        environment.update(env or {})
        tmp_size = int(spec.tmp_size or settings.FASTFLOW_RUNNER_TMPFS_SIZE)
        options: dict[str, Any] = {
            "image": image.id,
            "command": command,
            "user": settings.FASTFLOW_RUNNER_USER,
            "read_only": True,
            "tmpfs": {CONTAINER_TMP: f"size={tmp_size},mode=1777{',exec' if tmp_exec else ''}"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": spec.pids_limit or settings.FASTFLOW_RUNNER_PIDS_LIMIT,
            "working_dir": APP_DIR,
            "mounts": all_mounts,
            "environment": environment,
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

    def env_key(self, spec: RunSpec, image: Image) -> str | None:
        return env_key(
            pipeline_dir=spec.pipeline_dir,
            python_version=spec.python_version,
            runtime_id=image.id,
            extra_requirements=spec.extra_requirements,
        )

    def run_command(self, spec: RunSpec, image: Image) -> tuple[list[str], list[Mount], dict, str]:
        """What the container runs, its extra mounts and variables, and the LABEL_ENV value."""
        program = run_program(spec)
        if not spec.needs_environment:
            return [wrapper.interpreter_name(spec.python_version), *program], [], {}, "none"
        prepared = env_ready(self.name, self.env_key(spec, image))
        if prepared is None:
            # Without a network there is nothing to download from: --offline fails at once on
            # the empty private cache instead of waiting for uv's connection retries.
            offline = (spec.network or settings.FASTFLOW_RUNNER_NETWORK) == "none"
            command = uv_command(
                python_version=spec.python_version,
                requirements=spec.has_requirements,
                program=["python", *program],
                extra_requirements=spec.extra_requirements,
                offline=offline,
            )
            return command, [], {}, ENV_COLD_OFFLINE if offline else ENV_COLD
        source = self.host_paths.source
        mounts = [Mount(ENV_DIR, source(prepared), type="bind", read_only=True)]
        env = {"VIRTUAL_ENV": ENV_DIR, "PATH": f"{ENV_DIR}/bin:{image_path(image)}"}
        return [f"{ENV_DIR}/bin/python", *program], mounts, env, "prepared"

    def start(self, spec: RunSpec) -> DockerExecution:
        image = self.ensure_image(spec.python_version)
        command, mounts, env, prepared = self.run_command(spec, image)
        if spec.output_dir is not None:
            env["FASTFLOW_ROUTE_FILE"] = f"{MOUNT_POINT}/{ROUTE_FILE}"
        labels = {LABEL_PIPELINE: spec.pipeline_name, LABEL_ENV: prepared}
        options = self.container_options(
            spec,
            image=image,
            command=command,
            labels=labels,
            mounts=mounts,
            env=env,
            tmp_exec=prepared in (ENV_COLD, ENV_COLD_OFFLINE),
        )
        if self.pool.enabled:
            execution = self._start_pooled(spec, image, options)
            if execution is not None:
                return execution
        # Unpooled (no pool, or none of its members fits yet): create and start one now.
        if spec.output_dir is not None:
            output_dir_prepare(spec.output_dir, world_writable=True)
            source = self.host_paths.source(spec.output_dir)
            options["mounts"].append(Mount(MOUNT_POINT, source, type="bind"))
        options["labels"][LABEL_RUN_ID] = spec.run_id
        container = None
        try:
            container = self.client.containers.create(**options)
            container.start()
        except DOCKER_ERRORS as exc:
            if container is not None:
                _remove(container)
            raise InfrastructureError(f"could not start the run's container: {exc}") from exc
        return DockerExecution(spec=spec, executor=self, container=container, image=image)

    def _start_pooled(
        self, spec: RunSpec, image: Image, options: dict[str, Any]
    ) -> DockerExecution | None:
        """Hand the run to a warm-pool member created with exactly these options (without the
        command, the environment and the run id: those reach it at hand-over), or None."""
        template = {k: v for k, v in options.items() if k not in ("command", "environment")}
        template["labels"] = dict(options["labels"])
        template["mounts"] = list(options["mounts"])
        key = pool_key({**template, "output_dir": spec.output_dir is not None})
        # The waiter is the run's interpreter (the image's for `uv run`, which it execs).
        argv = options["command"]
        python = argv[0] if argv[0] != "uv" else wrapper.interpreter_name(spec.python_version)
        template["command"] = [python]
        template["_output"] = spec.output_dir is not None
        member = self.pool.take(key, template)
        if member is None:
            return None
        here = argv[0] == python and argv[1:3] == ["-u", "-c"]
        order = {"argv": argv, "env": options["environment"], "here": here}
        try:
            handed_at = self.pool.hand_over(
                member, run_id=spec.run_id, output_dir=spec.output_dir, order=order
            )
        except HandOverFailed as exc:
            logger.warning("run %s: pool hand-over failed (%s), unpooled start", spec.run_id, exc)
            return None
        return DockerExecution(
            spec=spec, executor=self, container=member.container, image=image, started_at=handed_at
        )

    def warm(
        self,
        *,
        pipeline_name: str,
        pipeline_dir: Path,
        python_version: str,
        timeout: float,
        extra_requirements: tuple[str, ...] = (),
    ) -> str:
        """Build the pipeline's environment in throwaway containers of the runner image, with
        a run's limits: the pipeline folder read-only, the shared cache and a fresh build
        directory writable (nothing else), the lock file in the container's tmpfs. The build
        directory is published (renamed into place) only when every step succeeded."""
        image = self.ensure_image(python_version)
        spec = warmup_spec(pipeline_name, Path(pipeline_dir), python_version, extra_requirements)
        # Of the requirements as they are now: an edit during the warm-up makes another key.
        key = self.env_key(spec, image)
        if key is None or env_ready(self.name, key) is not None:
            return ""  # no requirements, or these were prepared already
        build = env_build_dir(self.name, key, world_writable=True)
        cache = uv_cache_dir(self.name, world_writable=True)
        mounts = [
            Mount(CACHE_DIR, self.host_paths.source(cache), type="bind"),
            Mount(ENV_DIR, self.host_paths.source(build), type="bind"),
        ]
        steps = warmup_steps(spec)
        deadline = time.monotonic() + timeout
        try:
            for what, command in steps:
                failure = self._warm_step(
                    spec, image, what, command, mounts, max(deadline - time.monotonic(), 1), timeout
                )
                if failure:
                    return failure
            env_publish(build, self.name, key)
        finally:
            if build.exists():
                env_remove(build)
        return ""

    def _warm_step(
        self,
        spec: RunSpec,
        image: Image,
        what: str,
        command: list[str],
        mounts: list[Mount],
        wait: float,
        timeout: float,
    ) -> str:
        # Not labelled fastflow.managed=1: reconciliation must not take it for an orphan run.
        options = self.container_options(
            spec,
            image=image,
            command=command,
            labels={LABEL_WARMUP: spec.pipeline_name},
            mounts=mounts,
            env={"UV_CACHE_DIR": CACHE_DIR},
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
            raise ExecutionNeverStarted(f"container {container.short_id} was never started")
        started_at = None
        if LABEL_POOL in container.labels:
            started_at = self._pooled_start(container)
        try:
            image = self.client.images.get(container.attrs["Image"])
        except DOCKER_ERRORS:
            image = None
        return DockerExecution(
            spec=spec,
            executor=self,
            container=container,
            image=image,
            resume=True,
            started_at=started_at,
        )

    @staticmethod
    def _pooled_start(container: Container) -> datetime:
        """When a warm-pool member was handed its run (from its name: Docker's StartedAt is
        when the member was started, long before). A member renamed for the run whose engine
        died before sending the command exited unused, with nothing in its log: the run never
        began."""
        parsed = parse_run_container_name(container.name)
        if parsed is None:
            raise InfrastructureError(f"container {container.short_id} is an idle pool member")
        state = container.attrs.get("State") or {}
        if container.status in EXITED_STATES and state.get("ExitCode") == UNUSED_EXIT_CODE:
            try:
                unused = not container.logs(tail=1)
            except DOCKER_ERRORS as exc:
                raise InfrastructureError(f"Docker engine error while re-attaching: {exc}") from exc
            if unused:
                _remove(container)
                raise ExecutionNeverStarted(
                    f"pool container {container.short_id} was never handed its command"
                )
        return parsed[1]

    def running_handles(self) -> dict[str, str]:
        filters = {"label": [f"{LABEL_MANAGED}=1", f"{LABEL_SCOPE}={self.scope()}"]}
        try:
            containers = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        except DOCKER_ERRORS as exc:
            raise InfrastructureError(f"Docker engine error while listing runs: {exc}") from exc
        handles = {}
        for container in containers:
            if LABEL_POOL in container.labels:
                # A warm-pool member carries its run in its name once handed over; idle ones
                # belong to no run.
                parsed = parse_run_container_name(container.name)
                if parsed is not None:
                    handles[parsed[0]] = container.id
                continue
            handles[container.labels.get(LABEL_RUN_ID, "")] = container.id
        return handles

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


def _split_frame(frame: bytes) -> tuple[datetime, bytes]:
    """A frame of Docker's timestamped log stream: its time, to the millisecond (the log's
    precision), and its text. A frame without a readable time gets the time it arrived."""
    stamp, _, data = frame.partition(b" ")
    try:
        at = parse_timestamp(stamp.decode())
    except ValueError:
        at, data = datetime.now(UTC), frame
    return at.replace(microsecond=at.microsecond // 1000 * 1000), data


class DockerExecution(Execution):
    def __init__(
        self,
        *,
        spec: RunSpec,
        executor: DockerExecutor,
        container: Container,
        image: Image | None,
        resume: bool = False,
        started_at: datetime | None = None,
    ) -> None:
        super().__init__(spec=spec, handle_id=container.id)
        self._executor = executor
        self._container = container
        self._image = image
        self._resume = resume
        # A warm-pool member's run starts at hand-over, not when Docker started the container.
        self._started_at = started_at
        # Containers started by an engine before sources existed print a random marker.
        self._ready_token = container.labels.get(LABEL_MARKER) or wrapper.READY_TOKEN
        self._env = container.labels.get(LABEL_ENV, "")
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
            started_at = self._started_at or parse_timestamp(
                self._container.attrs["State"]["StartedAt"]
            )
        except DOCKER_ERRORS as exc:
            return self._lost(exc)
        # After a restart the "environment ready" note may already be in the file: then the
        # wrapper's ready line was taken, and its re-delivery (same millisecond) is dropped.
        noted = noted_ready(spec.log_file) if self._resume else None
        log, metrics = run_writers(
            spec, ready_token="" if noted else self._ready_token, started_at=started_at
        )
        self._writers = (log, metrics)
        if self.abandoned.is_set():  # abandoned before the writers existed
            self._release(log, metrics)
        if self._env == ENV_COLD and not self._resume:
            log.note(COLD_NOTE, at=started_at)
        outcome = Outcome(exit_code=None)
        try:
            # Daemon threads: an engine shutting down leaves running containers alone and must
            # not wait for them (the next engine re-attaches).
            follower = threading.Thread(
                target=self._follow_logs,
                args=(log, since, skip, noted[0] if noted else None),
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
            outcome.finished_at = _finished_at(state)
            outcome.oom_killed = bool(state.get("OOMKilled")) or (
                outcome.exit_code == wrapper.OOM_EXIT_CODE
                and bool(spec.mem_hard_limit)
                and not (outcome.timed_out or outcome.cancelled)
            )
            self._note_ending(outcome, log, started_at, noted)
            note_setup_failure(outcome, log)
        except DOCKER_ERRORS as exc:
            outcome.error = f"Docker engine error: {exc}"
            log.note(outcome.error)
        finally:
            self._stop_sampling.set()
            log.close()
            metrics.close()
        outcome_complete(outcome, spec=spec, log=log, metrics=metrics)
        outcome.uv_version = self._executor.uv_version(self._image)
        return outcome

    def _note_ending(
        self,
        outcome: Outcome,
        log: LogWriter,
        started_at: datetime,
        noted: tuple[datetime, float] | None,
    ) -> None:
        """The setup time, and what the log should say about how the container ended.
        `noted`: the "environment ready" note a previous engine already wrote (re-attach)."""
        spec = self.spec
        if log.ready_at is not None:
            outcome.setup_duration = max((log.ready_at - started_at).total_seconds(), 0.0)
        elif noted:
            outcome.setup_duration = noted[1]
        if outcome.oom_killed:
            limit = format_bytes(spec.mem_hard_limit) if spec.mem_hard_limit else "its"
            log.note(f"out of memory: the container was killed at its {limit} memory limit")
        if outcome.exit_code and self._env == ENV_COLD:
            log.note(COLD_HINT)
        elif outcome.exit_code and self._env == ENV_COLD_OFFLINE:
            log.note(NO_NETWORK_HINT)
        if self._log_error:
            log.note(f"log stream from Docker interrupted: {self._log_error}")

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

    def _follow_logs(
        self, log: LogWriter, since: datetime | None, skip: int, ready_at: datetime | None
    ) -> None:
        """Copy the container's output to the log until it exits.

        Docker timestamps every line, and `since` + `skip` resume exactly after the last line
        already in the file: a re-attach asks for lines from that line's millisecond and drops
        the `skip` lines of that millisecond that were written before. `ready_at`: when the
        wrapper's ready line was already noted, its time (its re-delivery is dropped).
        """
        try:
            while True:
                last, count = self._copy_stream(log, since, skip, ready_at)
                if self.abandoned.is_set() or not self._still_running():
                    return
                # The stream broke while the container still runs (daemon hiccup): resume.
                since, skip = last or since, count if last else skip
                ready_at = ready_at or log.ready_at
        except Exception as exc:
            if self.abandoned.is_set():
                return  # the stream was closed under it on purpose
            if not isinstance(exc, DOCKER_ERRORS):
                raise
            self._log_error = str(exc)
        finally:
            self._wake.set()

    def _open_stream(self, since: datetime | None) -> CancellableStream:
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 1}
        if since is not None:
            # A millisecond early, so float rounding never loses a line; older ones are dropped.
            params["since"] = f"{since.timestamp() - 0.001:.6f}"
        stream = log_frames(self._executor.client.api, self._container.id, params)
        if self.abandoned.is_set():
            stream.close()
        return stream

    def _copy_stream(
        self, log: LogWriter, since: datetime | None, skip: int, ready_at: datetime | None
    ) -> tuple[datetime | None, int]:
        last: datetime | None = None
        count = 0
        first_stdout = True
        self._stream = self._open_stream(since)
        for stream_id, frame in self._stream:
            if self.abandoned.is_set():
                break
            source = STREAMS.get(stream_id)
            if source is None:
                continue  # stdin echo or an unknown stream: nothing of the run's output
            at, data = _split_frame(frame)
            is_ready = False
            if source == STDOUT and first_stdout:
                # Only the first stdout line can be the wrapper's ready line (see wrapper.py).
                first_stdout = False
                is_ready = _is_line(data, self._ready_token) and ready_at in (None, at)
                if is_ready and ready_at is not None:
                    continue  # delivered again after a restart: it was noted already
            if not is_ready:  # counted like resume_point counts the file: no notes
                count = count + 1 if at == last else 1
                last = at
            if since is not None and at < since:
                continue
            if skip and since is not None and at == since:
                skip -= 1
                continue
            log.feed(data, at, source=source)
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


def log_frames(
    api: docker.APIClient, container_id: str, params: dict[str, Any]
) -> CancellableStream:
    """The container's log as (stream id, frame) pairs: 1 stdout, 2 stderr.

    docker-py's `logs()` merges the streams and drops which one a frame came from; the API's
    multiplexed format carries it in each frame's 8-byte header (stream id, 3 zero bytes, big
    endian length), so the engine reads the frames itself. `close()` unblocks a reader."""
    response = api._get(api._url("/containers/{0}/logs", container_id), params=params, stream=True)
    api._raise_for_status(response)
    api._disable_socket_timeout(api._get_raw_response_socket(response))

    def frames():
        while True:
            header = response.raw.read(8)
            if len(header) < 8:
                return
            stream_id, length = struct.unpack(">BxxxL", header)
            data = response.raw.read(length) if length else b""
            if length and not data:
                return
            yield stream_id, data

    return CancellableStream(frames(), response)


def _is_line(data: bytes, text: str) -> bool:
    return data.rstrip(b"\r\n") == text.encode()


def _finished_at(state: dict[str, Any]) -> datetime | None:
    """When the container's process exited (State.FinishedAt), not when anybody noticed."""
    try:
        moment = parse_timestamp(state.get("FinishedAt") or "")
    except ValueError:
        return None
    return moment if moment.year > 1 else None  # "0001-01-01T00:00:00Z": not finished


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
