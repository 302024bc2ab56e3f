"""The Job a Kubernetes run is: one locked-down pod, built from the RunSpec and the settings.

    Job fastflow-run-<run id>   backoffLimit 0, ttlSecondsAfterFinished, activeDeadlineSeconds
      pod  restartPolicy Never, no service account token, non-root, seccomp RuntimeDefault
        container "run"  readOnlyRootFilesystem, capabilities drop ALL, no privilege escalation,
                         requests = limits (memory, CPU) from the run's limits
          /tmp   emptyDir medium Memory, sizeLimit = the run's tmp_size (counts as its memory)
          /app   the pipeline folder, read-only (a subPath of FASTFLOW_K8S_PIPELINES_VOLUME)
          /venv  the prepared environment, read-only (a subPath of FASTFLOW_K8S_CACHE_VOLUME)
          /fastflow  the run's output directory, read-write (a subPath of
                 FASTFLOW_K8S_OUTPUT_VOLUME: route file, executed notebook)
          command: python3.X -u -c <relay> <the command a Docker run executes>

The shared uv cache is never mounted into runs. Everything here is a plain dict, as the API
takes it; nothing talks to the cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from runs_app.engine import wrapper
from runs_app.engine.base import InfrastructureError, RunSpec
from runs_app.engine.docker_executor import (
    APP_DIR,
    CACHE_DIR,
    CONTAINER_TMP,
    ENV_DIR,
    LABEL_ENV,
    LABEL_MANAGED,
    LABEL_PIPELINE,
    LABEL_RUN_ID,
    LABEL_SCOPE,
    LABEL_WARMUP,
    engine_env,
    run_program,
    uv_command,
)
from runs_app.engine.k8s_relay import relay_code
from runs_app.engine.outputs import MOUNT_POINT, ROUTE_FILE

CONTAINER = "run"
JOB_PREFIX = "fastflow-run-"
# The image's PATH is not known without pulling it; this is the Debian/official Python images'.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class PodSettings:
    """What the settings say about every run pod (read once per executor)."""

    namespace: str
    scope: str
    image_template: str
    pull: bool
    user: str
    service_account: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    image_pull_secrets: tuple[str, ...] = ()
    pipelines_volume: tuple[str, str] | None = None
    cache_volume: tuple[str, str] | None = None
    output_volume: tuple[str, str] | None = None
    pipelines_root: Path = Path("/")
    cache_root: Path = Path("/")
    output_root: Path = Path("/")
    job_ttl: int = 3600
    pending_timeout: float = 300.0

    @classmethod
    def from_settings(cls, *, scope: str) -> PodSettings:
        return cls(
            namespace=settings.FASTFLOW_K8S_NAMESPACE,
            scope=scope,
            image_template=settings.FASTFLOW_RUNNER_IMAGE,
            pull=settings.FASTFLOW_RUNNER_PULL,
            user=settings.FASTFLOW_RUNNER_USER,
            service_account=settings.FASTFLOW_K8S_SERVICE_ACCOUNT,
            node_selector=dict(settings.FASTFLOW_K8S_NODE_SELECTOR),
            tolerations=list(settings.FASTFLOW_K8S_TOLERATIONS),
            image_pull_secrets=tuple(settings.FASTFLOW_K8S_IMAGE_PULL_SECRETS),
            pipelines_volume=settings.FASTFLOW_K8S_PIPELINES_VOLUME,
            cache_volume=settings.FASTFLOW_K8S_CACHE_VOLUME,
            pipelines_root=Path(
                settings.FASTFLOW_K8S_PIPELINES_VOLUME_PATH or settings.PIPELINES_DIR
            ),
            cache_root=Path(settings.FASTFLOW_UV_CACHE_DIR),
            output_volume=settings.FASTFLOW_K8S_OUTPUT_VOLUME,
            output_root=Path(settings.DATA_DIR),
            job_ttl=settings.FASTFLOW_K8S_JOB_TTL_SECONDS,
            pending_timeout=settings.FASTFLOW_K8S_PENDING_TIMEOUT_SECONDS,
        )


def job_name(run_id: str) -> str:
    return f"{JOB_PREFIX}{run_id}"


def run_labels(*, run_id: str, scope: str) -> dict[str, str]:
    """What every run Job and pod carries: found again by run id, within this installation."""
    return {LABEL_MANAGED: "1", LABEL_SCOPE: scope, LABEL_RUN_ID: run_id}


def scope_selector(scope: str) -> str:
    return f"{LABEL_MANAGED}=1,{LABEL_SCOPE}={scope}"


def _user_ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    try:
        ids = int(uid), int(gid or uid)
    except ValueError:
        raise InfrastructureError(
            f"FASTFLOW_RUNNER_USER: the kubernetes executor needs a numeric uid:gid, got {user!r}"
        ) from None
    if ids[0] == 0:
        raise InfrastructureError("FASTFLOW_RUNNER_USER: runs never run as root (uid 0)")
    return ids


def _volume_source(volume: tuple[str, str], *, writable: bool = False) -> dict[str, Any]:
    kind, where = volume
    if kind == "pvc":
        return {"persistentVolumeClaim": {"claimName": where, "readOnly": not writable}}
    return {"hostPath": {"path": where, "type": "Directory"}}


def _sub_path(path: Path, root: Path, variable: str) -> str:
    """`path` within the volume mounted at `root`, symlinks resolved (a git sync checkout is
    reached through one; a subPath must be the real folder)."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        hint = ""
        if variable == "FASTFLOW_K8S_PIPELINES_VOLUME":
            hint = (
                " (with git sync, set FASTFLOW_K8S_PIPELINES_VOLUME_PATH to the folder that "
                "holds both FASTFLOW_PIPELINES_DIR and FASTFLOW_GIT_DIR)"
            )
        raise InfrastructureError(
            f"{variable}: {path} is not under {root}, the folder that volume holds{hint}"
        ) from None


def run_command(
    spec: RunSpec, prepared: Path | None, pod: PodSettings
) -> tuple[list[str], list[dict[str, Any]], dict[str, str], str]:
    """The run's own command (what the relay starts), its extra mounts and variables, and the
    LABEL_ENV value: the same three cases as a Docker run."""
    program = run_program(spec)
    if not spec.needs_environment:
        return [wrapper.interpreter_name(spec.python_version), *program], [], {}, "none"
    if prepared is None or pod.cache_volume is None:
        command = uv_command(
            python_version=spec.python_version,
            requirements=spec.has_requirements,
            program=["python", *program],
            extra_requirements=spec.extra_requirements,
        )
        return command, [], {}, "cold"
    sub_path = _sub_path(prepared, pod.cache_root, "FASTFLOW_K8S_CACHE_VOLUME")
    mounts = [{"name": "envs", "mountPath": ENV_DIR, "subPath": sub_path, "readOnly": True}]
    env = {"VIRTUAL_ENV": ENV_DIR, "PATH": f"{ENV_DIR}/bin:{IMAGE_PATH}"}
    return [f"{ENV_DIR}/bin/python", *program], mounts, env, "prepared"


def _output_mount(spec: RunSpec, pod: PodSettings) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The run's output directory at /fastflow (the engine reads it after the run: route file,
    executed notebook), and $FASTFLOW_ROUTE_FILE. A run with one and no volume to put it on
    fails: its route and artifacts would otherwise be lost without a word."""
    if spec.output_dir is None:
        return [], {}
    if pod.output_volume is None:
        raise InfrastructureError(
            "FASTFLOW_K8S_OUTPUT_VOLUME is not set: the run's output directory (route file, "
            "executed notebook) must be on a volume the engine shares with run pods "
            "(pvc:<claim> or host:<path>, the volume the engine sees at FASTFLOW_DATA_DIR)"
        )
    sub_path = _sub_path(spec.output_dir, pod.output_root, "FASTFLOW_K8S_OUTPUT_VOLUME")
    mounts = [{"name": "outputs", "mountPath": MOUNT_POINT, "subPath": sub_path}]
    return mounts, {"FASTFLOW_ROUTE_FILE": f"{MOUNT_POINT}/{ROUTE_FILE}"}


def _resources(spec: RunSpec) -> dict[str, Any]:
    """Requests = limits: the scheduler reserves what the run may use (Guaranteed QoS when both
    are set), so a node is never overcommitted by runs."""
    limits: dict[str, str] = {}
    if spec.mem_hard_limit:
        limits["memory"] = str(int(spec.mem_hard_limit))
    if spec.cpu_hard_limit:
        limits["cpu"] = f"{max(math.ceil(spec.cpu_hard_limit * 1000), 1)}m"
    return {"requests": dict(limits), "limits": limits} if limits else {}


def _pod_spec(
    spec: RunSpec, pod: PodSettings, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    uid, gid = _user_ids(pod.user)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Runs get no credentials for the API server, and no service links in their variables.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if pod.service_account:
        pod_spec["serviceAccountName"] = pod.service_account
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        pod_spec["tolerations"] = list(pod.tolerations)
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in pod.image_pull_secrets]
    return pod_spec


def _check_settings(pod: PodSettings) -> None:
    if pod.pipelines_volume is None:
        raise InfrastructureError(
            "FASTFLOW_K8S_PIPELINES_VOLUME is not set: run pods need the pipeline folders "
            "(pvc:<claim> or host:<path>, the volume the engine sees at FASTFLOW_PIPELINES_DIR)"
        )
    if settings.FASTFLOW_RUNNER_CA_BUNDLE:
        raise InfrastructureError(
            "FASTFLOW_RUNNER_CA_BUNDLE is not supported by the kubernetes executor: build the "
            "CA bundle into the runner image (docs/executors.md, Kubernetes)"
        )


def _container(
    spec: RunSpec,
    pod: PodSettings,
    *,
    command: list[str],
    args: list[str],
    mounts: list[dict[str, Any]],
    env: dict[str, str],
) -> dict[str, Any]:
    app_path = _sub_path(spec.pipeline_dir, pod.pipelines_root, "FASTFLOW_K8S_PIPELINES_VOLUME")
    environment = {k: v for k, v in spec.env.items() if k != "PATH"}
    environment.update(engine_env(run_id=spec.run_id, pipeline_name=spec.pipeline_name))
    environment.update(env)
    return {
        "name": CONTAINER,
        "image": pod.image_template.format(python_version=spec.python_version),
        "imagePullPolicy": "IfNotPresent" if pod.pull else "Never",
        "command": command,
        "args": args,
        "workingDir": APP_DIR,
        "env": [{"name": name, "value": value} for name, value in sorted(environment.items())],
        "resources": _resources(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": CONTAINER_TMP},
            {"name": "pipelines", "mountPath": APP_DIR, "subPath": app_path, "readOnly": True},
            *mounts,
        ],
    }


def _volumes(
    spec: RunSpec, pod: PodSettings, *, cache: bool, writable: bool = False
) -> list[dict[str, Any]]:
    tmp_size = int(spec.tmp_size or settings.FASTFLOW_RUNNER_TMPFS_SIZE)
    volumes = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(tmp_size)}},
        {"name": "pipelines", **_volume_source(pod.pipelines_volume)},
    ]
    if cache:
        source = _volume_source(pod.cache_volume)
        if "persistentVolumeClaim" in source:
            # Only warm-ups mount it writable; runs mount their environment read-only.
            source["persistentVolumeClaim"]["readOnly"] = not writable
        volumes.append({"name": "envs", **source})
    return volumes


def _job(
    *,
    name: str,
    pod: PodSettings,
    labels: dict[str, str],
    annotations: dict[str, str],
    pod_spec: dict[str, Any],
    deadline: float | None,
) -> dict[str, Any]:
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # a failed run is a failed run: the engine's retries decide
        "ttlSecondsAfterFinished": pod.job_ttl,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if deadline:
        job_spec["activeDeadlineSeconds"] = math.ceil(deadline)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": pod.namespace,
            "labels": dict(labels),
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def job_manifest(spec: RunSpec, pod: PodSettings, *, prepared: Path | None) -> dict[str, Any]:
    """The Job for one run. `prepared`: its environment, as `uvcache.env_ready` found it."""
    _check_settings(pod)
    command, mounts, env, prepared_label = run_command(spec, prepared, pod)
    output_mounts, output_env = _output_mount(spec, pod)
    container = _container(
        spec,
        pod,
        command=[wrapper.interpreter_name(spec.python_version), "-u", "-c", relay_code()],
        args=command,
        mounts=[*mounts, *output_mounts],
        env={**env, **output_env},
    )
    volumes = _volumes(spec, pod, cache=bool(mounts))
    if output_mounts:
        volumes.append({"name": "outputs", **_volume_source(pod.output_volume, writable=True)})
    labels = {**run_labels(run_id=spec.run_id, scope=pod.scope), LABEL_ENV: prepared_label}
    # The timeout's backstop in the cluster (the engine enforces it from the container's
    # start; the Job's clock also counts the time its pod waits to be scheduled).
    deadline = spec.timeout + pod.pending_timeout if spec.timeout else None
    return _job(
        name=job_name(spec.run_id),
        pod=pod,
        labels=labels,
        # A pipeline name need not be a valid label value; annotations take any text.
        annotations={LABEL_PIPELINE: spec.pipeline_name},
        pod_spec=_pod_spec(spec, pod, container, volumes),
        deadline=deadline,
    )


def require_cache_volume(pod: PodSettings) -> None:
    """Warm-ups need the pipelines volume and the cache volume."""
    _check_settings(pod)
    if pod.cache_volume is None:
        raise InfrastructureError(
            "FASTFLOW_K8S_CACHE_VOLUME is not set: requirements cannot be prepared, so every "
            "run installs its own (cold). Set it to the volume the engine sees at "
            "FASTFLOW_UV_CACHE_DIR (pvc:<claim> or host:<path>)"
        )


def warmup_manifest(
    spec: RunSpec, pod: PodSettings, *, name: str, command: list[str], build: Path, cache: Path
) -> dict[str, Any]:
    """A Job for one warm-up step: a run's lock-down and limits, the pipeline folder read-only,
    the shared cache and the environment's build directory writable (nothing else). Labelled
    `fastflow.warmup`, never `fastflow.managed`: reconciliation never takes it for a run."""
    require_cache_volume(pod)
    variable = "FASTFLOW_K8S_CACHE_VOLUME"
    mounts = [
        {
            "name": "envs",
            "mountPath": CACHE_DIR,
            "subPath": _sub_path(cache, pod.cache_root, variable),
        },
        {
            "name": "envs",
            "mountPath": ENV_DIR,
            "subPath": _sub_path(build, pod.cache_root, variable),
        },
    ]
    container = _container(
        spec,
        pod,
        command=command[:1],
        args=command[1:],
        mounts=mounts,
        env={"UV_CACHE_DIR": CACHE_DIR},
    )
    labels = {LABEL_SCOPE: pod.scope, LABEL_WARMUP: "1"}
    return _job(
        name=name,
        pod=pod,
        labels=labels,
        annotations={LABEL_PIPELINE: spec.pipeline_name},
        pod_spec=_pod_spec(spec, pod, container, _volumes(spec, pod, cache=True, writable=True)),
        deadline=None,
    )
