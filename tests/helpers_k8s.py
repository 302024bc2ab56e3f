"""A Kubernetes API server for the Kubernetes executor's tests, at the HTTP level.

No cluster can run on our machines, so this is one: an HTTP server on 127.0.0.1 in the test
process that answers the endpoints the executor uses (Jobs, pods, pod logs, metrics.k8s.io)
with the JSON a real API server sends, reached through the real `kubernetes` client with a
generated kubeconfig. Its "kubelet" runs each pod's container for real, on the Docker engine,
translating the pod spec (image, command, user, read-only root, dropped capabilities, the
memory-backed /tmp, read-only hostPath/PVC subPath mounts, memory and CPU limits) into the
container's options; the pod's log is the container's merged log with timestamps, as the
kubelet serves it, and its status is the container's state. Tests steer what a real cluster
would decide: a pod that cannot be scheduled, an image that does not pull, a lost node, an API
server that goes away.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import docker
from kubernetes.utils import parse_quantity

from runs_app.engine.metrics import docker_cpu_percent, docker_memory_bytes
from tests.helpers_executor import use_runner_image

KUBELET_LABEL = "fastflow.test-kubelet"
NAMESPACE = "fastflow-runs"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _docker_time(value: str) -> str:
    """Docker's nanosecond times as the API server writes them (whole seconds)."""
    return value.split(".")[0].removesuffix("Z") + "Z"


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeCluster:
    """One namespace of a cluster. `behaviour` decides what happens to the next pods:
    "run" (scheduled and run on Docker), "unschedulable", "image-pull-backoff"."""

    def __init__(self, *, namespace: str, claims: dict[str, Path] | None = None) -> None:
        self.namespace = namespace
        self.claims = claims or {}
        self.behaviour = "run"
        self.metrics_api = True
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, Any] = {}  # pod name → Docker container
        self.created_jobs: list[dict[str, Any]] = []  # request bodies, as sent
        self.deletions: list[tuple[str, str, dict[str, Any]]] = []  # (kind, name, options)
        self.requests: list[tuple[str, str]] = []
        self.log_requests: list[dict[str, list[str]]] = []
        self.lost: set[str] = set()  # pods whose node is gone: the kubelet no longer reports
        self.lock = threading.RLock()
        self.docker = docker.from_env()
        self.scope = secrets.token_hex(6)
        self._server: ThreadingHTTPServer | None = None
        self._streams: set[socket.socket] = set()
        self.port = 0
        self._stop = threading.Event()
        self._kubelet = threading.Thread(target=self._kubelet_loop, daemon=True)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeCluster:
        self.serve()
        self._kubelet.start()
        return self

    def serve(self) -> None:
        """(Re)start answering requests, on the same port as before."""
        cluster = self

        class Handler(_Handler):
            pass

        Handler.cluster = cluster
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def go_away(self) -> None:
        """The API server is unreachable: nothing listens, open streams break."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self.lock:
            streams, self._streams = set(self._streams), set()
        for sock in streams:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self.go_away()
        for container in self.docker.containers.list(
            all=True, filters={"label": f"{KUBELET_LABEL}={self.scope}"}
        ):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "engine", "user": {"token": "test-token"}}],
                    "contexts": [
                        {
                            "name": "test",
                            "context": {
                                "cluster": "test",
                                "user": "engine",
                                "namespace": self.namespace,
                            },
                        }
                    ],
                    "current-context": "test",
                }
            )
        )
        return path

    # --- what tests do --------------------------------------------------------------------------

    def pod_of(self, job: str) -> dict[str, Any] | None:
        with self.lock:
            for pod in self.pods.values():
                if pod["metadata"]["labels"].get("job-name") == job:
                    return pod
        return None

    def lose_node(self, pod_name: str) -> None:
        """The pod's node stops answering: the node controller marks the pod for deletion
        (the taint manager's DisruptionTarget), its containers die with the node."""
        with self.lock:
            pod = self.pods[pod_name]
            self.lost.add(pod_name)
            pod["metadata"]["deletionTimestamp"] = now_rfc3339()
            pod["status"].setdefault("conditions", []).append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                    "lastTransitionTime": now_rfc3339(),
                }
            )
            container = self.containers.get(pod_name)
        if container is not None:
            container.kill()

        def remove_later() -> None:
            time.sleep(1.5)
            with self.lock:
                self.pods.pop(pod_name, None)

        threading.Thread(target=remove_later, daemon=True).start()

    def exceed_deadline(self, job_name: str) -> None:
        """The Job's activeDeadlineSeconds passed: the Job controller marks it failed and
        kills its pod (SIGKILL: exit 137, the status a memory kill also has)."""
        with self.lock:
            job = self.jobs[job_name]
            job["status"]["conditions"] = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ]
            pod = self.pod_of(job_name)
            container = self.containers.get(pod["metadata"]["name"])
        container.kill()

    # --- the API --------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body["metadata"]["name"]
        with self.lock:
            self.created_jobs.append(json.loads(json.dumps(body)))
            if name in self.jobs:
                return 409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            job = json.loads(json.dumps(body))
            job["metadata"].update(
                uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), resourceVersion="1"
            )
            job["status"] = {"startTime": now_rfc3339(), "active": 1}
            self.jobs[name] = job
            pod = self._new_pod(job)
        if self.behaviour == "run":
            threading.Thread(target=self._run_pod, args=(pod["metadata"]["name"],)).start()
        return 201, job

    def _new_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        name = job["metadata"]["name"]
        template = job["spec"]["template"]
        pod_name = f"{name}-{secrets.token_hex(3)[:5]}"
        labels = {
            **template["metadata"].get("labels", {}),
            "job-name": name,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": job["metadata"]["uid"],
        }
        status: dict[str, Any] = {"phase": "Pending", "conditions": []}
        if self.behaviour == "unschedulable":
            status["conditions"].append(
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient memory.",
                }
            )
        elif self.behaviour == "image-pull-backoff":
            image = template["spec"]["containers"][0]["image"]
            status["containerStatuses"] = [
                {
                    "name": "run",
                    "ready": False,
                    "restartCount": 0,
                    "image": image,
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": f'Back-off pulling image "{image}"',
                        }
                    },
                }
            ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": self.namespace,
                "labels": labels,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now_rfc3339(),
                "ownerReferences": [{"kind": "Job", "name": name, "uid": job["metadata"]["uid"]}],
            },
            "spec": json.loads(json.dumps(template["spec"])),
            "status": status,
        }
        self.pods[pod_name] = pod
        return pod

    def delete_job(self, name: str, options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.deletions.append(("job", name, options))
            job = self.jobs.pop(name, None)
            if job is None:
                return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found')
            pods = [
                p for p, pod in self.pods.items() if pod["metadata"]["labels"]["job-name"] == name
            ]
        grace = options.get("gracePeriodSeconds")
        for pod in pods:
            self.delete_pod(
                pod, {"gracePeriodSeconds": 1 if grace is None else grace}, record=False
            )
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    def delete_pod(
        self, name: str, options: dict[str, Any], *, record: bool = True
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if record:
                self.deletions.append(("pod", name, options))
            pod = self.pods.get(name)
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found')
            pod["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            container = self.containers.get(name)
        grace = int(options.get("gracePeriodSeconds", 30))

        def terminate() -> None:
            if container is not None:
                with contextlib.suppress(docker.errors.APIError):
                    container.stop(timeout=grace)  # SIGTERM, SIGKILL after the grace period
                self._sync(name)
            time.sleep(0.5)  # the terminated status is visible a moment before it is gone
            with self.lock:
                self.pods.pop(name, None)

        threading.Thread(target=terminate, daemon=True).start()
        return 200, pod

    # --- the kubelet ------------------------------------------------------------------------------

    def _run_pod(self, pod_name: str) -> None:
        with self.lock:
            pod = self.pods.get(pod_name)
            if pod is None:
                return
            spec = json.loads(json.dumps(pod["spec"]))
        try:
            container = self.docker.containers.create(**self._container_options(pod_name, spec))
            with self.lock:
                self.containers[pod_name] = container
            container.start()
        except docker.errors.APIError as exc:
            with self.lock:
                pod["status"]["containerStatuses"] = [
                    {
                        "name": "run",
                        "state": {
                            "waiting": {"reason": "CreateContainerError", "message": str(exc)}
                        },
                    }
                ]
            return
        self._sync(pod_name)

    def _container_options(self, pod_name: str, spec: dict[str, Any]) -> dict[str, Any]:
        container = spec["containers"][0]
        context = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        tmpfs, mounts = {}, []
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                size = int(parse_quantity(volume["emptyDir"]["sizeLimit"]))
                tmpfs[mount["mountPath"]] = f"size={size},mode=1777"
                continue
            if "hostPath" in volume:
                root = Path(volume["hostPath"]["path"])
            else:
                root = self.claims[volume["persistentVolumeClaim"]["claimName"]]
            read_only = mount.get("readOnly", False) or volume.get("persistentVolumeClaim", {}).get(
                "readOnly", False
            )
            source = root / mount.get("subPath", "")
            mounts.append(
                docker.types.Mount(
                    mount["mountPath"], str(source), type="bind", read_only=read_only
                )
            )
        limits = container.get("resources", {}).get("limits", {})
        options = {
            "image": container["image"],
            "entrypoint": container["command"],
            "command": container.get("args", []),
            "environment": {item["name"]: item["value"] for item in container.get("env", [])},
            "working_dir": container.get("workingDir"),
            "user": f"{context['runAsUser']}:{context['runAsGroup']}",
            "read_only": context.get("readOnlyRootFilesystem", False),
            "cap_drop": context.get("capabilities", {}).get("drop", []),
            "security_opt": []
            if context.get("allowPrivilegeEscalation", True)
            else ["no-new-privileges"],
            "tmpfs": tmpfs,
            "mounts": mounts,
            "network_mode": "none",
            "labels": {KUBELET_LABEL: self.scope, "pod": pod_name},
        }
        if "memory" in limits:
            options["mem_limit"] = int(parse_quantity(limits["memory"]))
            options["memswap_limit"] = options["mem_limit"]
        if "cpu" in limits:
            options["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 10**9)
        return options

    def _kubelet_loop(self) -> None:
        while not self._stop.wait(0.1):
            with self.lock:
                names = [name for name in self.containers if name in self.pods]
            for name in names:
                with contextlib.suppress(docker.errors.DockerException):
                    self._sync(name)

    def _sync(self, pod_name: str) -> None:
        """The pod's status from its container's state, as the kubelet reports it."""
        with self.lock:
            container = self.containers.get(pod_name)
            pod = self.pods.get(pod_name)
            if container is None or pod is None or pod_name in self.lost:
                return
        try:
            container.reload()
        except docker.errors.NotFound:
            return
        state = container.attrs["State"]
        status = {"name": "run", "ready": state["Running"], "restartCount": 0}
        if state["Status"] in ("exited", "dead"):
            code = int(state["ExitCode"])
            reason = "OOMKilled" if state["OOMKilled"] else ("Completed" if code == 0 else "Error")
            status["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": _docker_time(state["StartedAt"]),
                    "finishedAt": _docker_time(state["FinishedAt"]),
                }
            }
            phase = "Succeeded" if code == 0 else "Failed"
        elif state["Running"]:
            status["state"] = {"running": {"startedAt": _docker_time(state["StartedAt"])}}
            phase = "Running"
        else:
            return
        with self.lock:
            if pod_name in self.lost or pod_name not in self.pods:
                return
            pod["status"]["phase"] = phase
            pod["status"]["startTime"] = _docker_time(state["StartedAt"])
            pod["status"]["containerStatuses"] = [status]
            job = self.jobs.get(pod["metadata"]["labels"]["job-name"])
            settled = job is not None and "conditions" in job["status"]
            if job is not None and phase in ("Succeeded", "Failed") and not settled:
                job["status"] = {
                    "startTime": job["status"].get("startTime"),
                    "succeeded" if phase == "Succeeded" else "failed": 1,
                    "conditions": [
                        {
                            "type": "Complete" if phase == "Succeeded" else "Failed",
                            "status": "True",
                            "reason": "" if phase == "Succeeded" else "BackoffLimitExceeded",
                        }
                    ],
                }

    def stream_log(self, pod_name: str, query: dict[str, list[str]], out: Any) -> None:
        """The container's log as the kubelet serves it (merged streams, RFC 3339 nano
        timestamps)."""
        with self.lock:
            self.log_requests.append(query)
            container = self.containers[pod_name]
        since = query.get("sinceTime", [None])[0]
        kwargs: dict[str, Any] = {
            "stdout": True,
            "stderr": True,
            "stream": True,
            "follow": query.get("follow", ["false"])[0] == "true",
            "timestamps": query.get("timestamps", ["false"])[0] == "true",
        }
        if since:
            kwargs["since"] = int(
                datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
            )
        for chunk in container.logs(**kwargs):
            out.write(chunk)
            out.flush()

    def pod_metrics(self, pod_name: str) -> dict[str, Any] | None:
        with self.lock:
            container = self.containers.get(pod_name)
        if container is None:
            return None
        reading = container.stats(stream=False)
        memory = docker_memory_bytes(reading)
        if memory is None:
            return None
        cores = docker_cpu_percent(reading) / 100
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": pod_name, "namespace": self.namespace},
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "window": "1s",
            "containers": [
                {
                    "name": "run",
                    "usage": {"cpu": f"{int(cores * 1e9)}n", "memory": f"{memory // 1024}Ki"},
                }
            ],
        }


_PATHS = [
    ("GET", re.compile(r"^/version$"), "version"),
    ("POST", re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs$"), "create_job"),
    ("GET", re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs$"), "list_jobs"),
    (
        "GET",
        re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)$"),
        "get_job",
    ),
    (
        "DELETE",
        re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)$"),
        "delete_job",
    ),
    ("GET", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$"), "list_pods"),
    (
        "DELETE",
        re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$"),
        "delete_pod",
    ),
    ("GET", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$"), "pod_log"),
    ("GET", re.compile(r"^/apis/metrics\.k8s\.io/v1beta1$"), "metrics_group"),
    (
        "GET",
        re.compile(
            r"^/apis/metrics\.k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$"
        ),
        "pod_metrics",
    ),
]


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeCluster
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        cluster = self.cluster
        cluster.requests.append((method, url.path))
        if self.headers.get("Authorization") != "Bearer test-token":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        for verb, pattern, action in _PATHS:
            match = pattern.match(url.path)
            if verb == method and match:
                if match.groupdict().get("ns", cluster.namespace) != cluster.namespace:
                    self._send(404, _status(404, "NotFound", "namespace not found"))
                    return
                getattr(self, action)(
                    query=query,
                    body=body,
                    **{k: v for k, v in match.groupdict().items() if k != "ns"},
                )
                return
        self._send(
            404, _status(404, "NotFound", "the server could not find the requested resource")
        )

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def version(self, **_: Any) -> None:
        self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-test"})

    def create_job(self, *, body: dict[str, Any], **_: Any) -> None:
        self._send(*self.cluster.create_job(body))

    def _listed(self, kind: str, items: list[dict[str, Any]], query: dict) -> None:
        selector = query.get("labelSelector", [""])[0]
        found = [item for item in items if _matches(item["metadata"].get("labels", {}), selector)]
        self._send(200, {"kind": kind, "apiVersion": "v1", "metadata": {}, "items": found})

    def list_jobs(self, *, query: dict, **_: Any) -> None:
        with self.cluster.lock:
            items = json.loads(json.dumps(list(self.cluster.jobs.values())))
        self._listed("JobList", items, query)

    def list_pods(self, *, query: dict, **_: Any) -> None:
        with self.cluster.lock:
            items = json.loads(json.dumps(list(self.cluster.pods.values())))
        self._listed("PodList", items, query)

    def get_job(self, *, name: str, **_: Any) -> None:
        with self.cluster.lock:
            job = json.loads(json.dumps(self.cluster.jobs.get(name)))
        if job is None:
            self._send(404, _status(404, "NotFound", f'jobs.batch "{name}" not found'))
        else:
            self._send(200, job)

    def delete_job(self, *, name: str, body: dict[str, Any], **_: Any) -> None:
        self._send(*self.cluster.delete_job(name, body))

    def delete_pod(self, *, name: str, body: dict[str, Any], **_: Any) -> None:
        self._send(*self.cluster.delete_pod(name, body))

    def pod_log(self, *, name: str, query: dict, **_: Any) -> None:
        with self.cluster.lock:
            known = name in self.cluster.pods or name in self.cluster.containers
            started = name in self.cluster.containers
        if not known:
            self._send(404, _status(404, "NotFound", f'pods "{name}" not found'))
            return
        if not started:
            message = f'container "run" in pod "{name}" is waiting to start: ContainerCreating'
            self._send(400, _status(400, "BadRequest", message))
            return
        with self.cluster.lock:
            self.cluster._streams.add(self.connection)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.cluster.stream_log(name, query, self.wfile)
        except (OSError, docker.errors.DockerException):
            pass
        finally:
            with self.cluster.lock:
                self.cluster._streams.discard(self.connection)

    def metrics_group(self, **_: Any) -> None:
        if self.cluster.metrics_api:
            self._send(200, {"kind": "APIResourceList", "groupVersion": "metrics.k8s.io/v1beta1"})
        else:
            self._send(
                404, _status(404, "NotFound", "the server could not find the requested resource")
            )

    def pod_metrics(self, *, name: str, **_: Any) -> None:
        reading = self.cluster.pod_metrics(name) if self.cluster.metrics_api else None
        if reading is None:
            self._send(
                404, _status(404, "NotFound", f'podmetrics.metrics.k8s.io "{name}" not found')
            )
        else:
            self._send(200, reading)


def serve_fake_cluster(settings, tmp_path: Path, pipelines_dir: Path) -> Iterator[FakeCluster]:
    """A fresh API server (and kubelet) for one test; the executor settings point at it."""
    use_runner_image(settings)
    fake = FakeCluster(namespace=NAMESPACE, claims={"fastflow-pipelines": pipelines_dir}).start()
    settings.FASTFLOW_EXECUTOR = "kubernetes"
    settings.FASTFLOW_K8S_KUBECONFIG = str(fake.kubeconfig(tmp_path / "kubeconfig"))
    settings.FASTFLOW_K8S_NAMESPACE = NAMESPACE
    settings.FASTFLOW_K8S_PIPELINES_VOLUME = ("host", str(pipelines_dir))
    settings.FASTFLOW_K8S_CACHE_VOLUME = None
    settings.FASTFLOW_K8S_OUTPUT_VOLUME = ("host", str(settings.DATA_DIR))
    settings.FASTFLOW_K8S_POLL_SECONDS = 0.2
    settings.FASTFLOW_K8S_REQUEST_TIMEOUT_SECONDS = 5.0
    settings.FASTFLOW_RUNNER_PULL = False
    settings.FASTFLOW_CANCEL_GRACE_SECONDS = 1
    settings.FASTFLOW_METRICS_INTERVAL_SECONDS = 0.5
    try:
        yield fake
    finally:
        fake.close()
