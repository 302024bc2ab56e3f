"""The few Kubernetes API calls the executor makes, through the official `kubernetes` client.

Why the official client (the `fastflow[kubernetes]` extra) rather than lightkube: it loads
every kind of kubeconfig (exec plugins, OIDC, client certificates) and the in-cluster service
account the same way `kubectl` does, and it is synchronous, which fits the engine's threads.
Responses are read as plain JSON (`_preload_content=False`): the executor needs a handful of
fields, and dicts are what the tests' API server records. The pod log is requested directly
because the generated client has no `sinceTime` parameter, which resuming needs.

Every failure becomes `InfrastructureError` naming the API server, except a 404, which is
`LookupError` (the object is gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings

from runs_app.engine.base import InfrastructureError

try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
except ImportError:  # pragma: no cover - the extra is installed by `.[dev]`
    k8s_client = None

LOG_CHUNK = 64 * 1024
# A followed log sends nothing while the pipeline is quiet; reading gives up after this long
# and the executor asks again from the last line, so a connection that died silently (an API
# server gone without closing it) is noticed.
LOG_READ_TIMEOUT = 60.0


def _require_client() -> None:
    if k8s_client is None:
        raise InfrastructureError(
            "FASTFLOW_EXECUTOR=kubernetes needs the Kubernetes client: "
            "pip install 'fastflow[kubernetes]'"
        )


def _load_configuration() -> Any:
    """The client configuration: FASTFLOW_K8S_KUBECONFIG, else in-cluster, else kubectl's."""
    configuration = k8s_client.Configuration()
    kubeconfig = settings.FASTFLOW_K8S_KUBECONFIG
    context = settings.FASTFLOW_K8S_CONTEXT or None
    try:
        if kubeconfig:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(context=context, client_configuration=configuration)
    except (ConfigException, OSError, ValueError) as exc:
        where = kubeconfig or "the in-cluster service account or ~/.kube/config"
        raise InfrastructureError(
            f"FASTFLOW_K8S_KUBECONFIG: cannot load the Kubernetes configuration from {where}: {exc}"
        ) from exc
    # One connection per concurrent stream (a log follower and the status polls of each run).
    configuration.connection_pool_maxsize = 2 * settings.FASTFLOW_MAX_CONCURRENT_RUNS + 10
    configuration.retries = False  # an unreachable server is reported, not retried blindly
    return configuration


class KubernetesApi:
    """A lazily connected client for one namespace. Thread-safe: urllib3's pool is."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._client: Any = None

    @property
    def host(self) -> str:
        with self._lock:
            return self._client.configuration.host if self._client else "(not connected)"

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                _require_client()
                self._client = k8s_client.ApiClient(_load_configuration())
            return self._client

    def _error(self, exc: Exception, what: str) -> Exception:
        if isinstance(exc, ApiException):
            if exc.status == 404:
                return LookupError(what)
            detail = _api_message(exc)
            return InfrastructureError(f"Kubernetes API error {exc.status} while {what}: {detail}")
        return InfrastructureError(
            f"Kubernetes API server not reachable at {self.host} while {what}: {exc}"
        )

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> Any:
        api = self.client
        headers = {"Accept": "application/json, */*"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        timeout = settings.FASTFLOW_K8S_REQUEST_TIMEOUT_SECONDS
        try:
            request = api.param_serialize(
                method=method,
                resource_path=path,
                path_params={"namespace": self.namespace},
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = api.call_api(
                *request, _request_timeout=(timeout, LOG_READ_TIMEOUT) if stream else timeout
            )
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException(http_resp=response)
            if stream:
                return response.response
            return json.loads(response.read() or b"{}")
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, what) from exc

    # --- Jobs ---------------------------------------------------------------------------------

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        return self._request(
            "POST",
            "/apis/batch/v1/namespaces/{namespace}/jobs",
            f"creating Job {name}",
            body=manifest,
        )

    def get_job(self, name: str) -> dict[str, Any]:
        return self._request(
            "GET", f"/apis/batch/v1/namespaces/{{namespace}}/jobs/{name}", f"reading Job {name}"
        )

    def list_jobs(self, selector: str) -> list[dict[str, Any]]:
        found = self._request(
            "GET",
            "/apis/batch/v1/namespaces/{namespace}/jobs",
            "listing run Jobs",
            query=[("labelSelector", selector)],
        )
        return found.get("items") or []

    def delete_job(self, name: str, *, grace_seconds: int | None, foreground: bool) -> bool:
        """Delete a Job with its pods; False when it was gone already."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Foreground" if foreground else "Background",
        }
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            self._request(
                "DELETE",
                f"/apis/batch/v1/namespaces/{{namespace}}/jobs/{name}",
                f"deleting Job {name}",
                body=body,
            )
        except LookupError:
            return False
        return True

    # --- Pods ---------------------------------------------------------------------------------

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        found = self._request(
            "GET",
            "/api/v1/namespaces/{namespace}/pods",
            "listing run pods",
            query=[("labelSelector", selector)],
        )
        return found.get("items") or []

    def delete_pod(self, name: str, *, grace_seconds: int) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": grace_seconds}
        with contextlib.suppress(LookupError):  # gone already
            self._request(
                "DELETE",
                f"/api/v1/namespaces/{{namespace}}/pods/{name}",
                f"deleting pod {name}",
                body=body,
            )

    def pod_log(self, pod: str, container: str, since: datetime | None) -> Any:
        """The container's log, followed, each line with its RFC 3339 nano timestamp. `since`
        is sent as `sinceTime` (whole seconds: the API's precision); older lines come too."""
        query = [("container", container), ("follow", "true"), ("timestamps", "true")]
        if since is not None:
            query.append(("sinceTime", since.strftime("%Y-%m-%dT%H:%M:%SZ")))
        return self._request(
            "GET",
            f"/api/v1/namespaces/{{namespace}}/pods/{pod}/log",
            f"following the log of pod {pod}",
            query=query,
            stream=True,
        )

    def pod_metrics(self, pod: str) -> dict[str, Any]:
        """metrics.k8s.io (metrics-server); LookupError when the cluster has no metrics API
        (or no reading for the pod yet)."""
        return self._request(
            "GET",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{{namespace}}/pods/{pod}",
            f"reading the metrics of pod {pod}",
        )

    def metrics_available(self) -> bool:
        """Whether the cluster serves the metrics API at all (False only on a clear 404)."""
        try:
            self._request("GET", "/apis/metrics.k8s.io/v1beta1", "looking for the metrics API")
        except LookupError:
            return False
        except InfrastructureError:
            return True
        return True

    def version(self) -> dict[str, Any]:
        return self._request("GET", "/version", "checking the API server")


def log_lines(response: Any) -> Iterator[bytes]:
    """The lines of a followed log response, as they arrive (without their newline)."""
    pending = b""
    while True:
        chunk = response.read1(LOG_CHUNK) if hasattr(response, "read1") else response.read(1)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def is_read_timeout(exc: BaseException) -> bool:
    """Whether a log read gave up because nothing came (LOG_READ_TIMEOUT), not an error."""
    return k8s_client is not None and isinstance(
        exc, urllib3.exceptions.ReadTimeoutError | TimeoutError
    )


def close_quietly(response: Any) -> None:
    try:
        response.close()
        response.release_conn()
    except Exception:  # noqa: BLE001, S110 - closing a stream that is going away anyway
        pass


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None) or getattr(exc, "data", None) or b""
    try:
        return json.loads(body).get("message") or str(body)[:300]
    except (ValueError, TypeError, AttributeError):
        return (body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body))[:300]
