"""Liveness and readiness probes: unauthenticated, cheap, no sessions touched.

Ready means the database answers and every readiness check an app registered passes (runs_app
registers "some runscheduler heartbeat is fresh" in its AppConfig.ready), so the site knows no
app. Endpoints that authenticate a bearer token themselves (/metrics) register here too, to be
answered before the host check like the probes.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

# Each returns "" when its part is ready, else the reason shown in the 503 body; it may query
# the database (a DatabaseError is reported as the database being unavailable).
ReadinessCheck = Callable[[], str]
_readiness_checks: list[ReadinessCheck] = []


def readiness_check_register(check: ReadinessCheck) -> None:
    if check not in _readiness_checks:
        _readiness_checks.append(check)


# Paths whose view checks an Authorization header itself (runs_app's /metrics): requests to
# them carrying one are answered here, before the host check, like the probes.
_bearer_endpoints: dict[str, Callable[[HttpRequest], HttpResponse]] = {}


def bearer_endpoint_register(path: str, view: Callable[[HttpRequest], HttpResponse]) -> None:
    _bearer_endpoints[path] = view


def _probe(payload: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(payload, status=status)
    # A cached "ok" from a proxy would hide an outage.
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The web process answers; deliberately no database access (that is readyz)."""
    return _probe({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready = the database answers and every registered readiness check passes."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        reasons = [reason for check in _readiness_checks if (reason := check())]
    except DatabaseError as exc:
        return _probe(
            {"status": "unavailable", "reason": f"database: {exc.__class__.__name__}"}, 503
        )
    if reasons:
        return _probe({"status": "unavailable", "reason": "; ".join(reasons)}, 503)
    return _probe({"status": "ok"})


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthProbeMiddleware:
    """Answer the probes before any other middleware (first in MIDDLEWARE).

    Orchestrators probe by IP: Kubernetes sends `Host: <pod IP>:<port>`, which is not in
    ALLOWED_HOSTS, and CommonMiddleware's host check would turn every probe into a 400 (an
    instance that never becomes ready). The probes reveal nothing and change nothing, so they
    skip the host check, sessions and CSRF.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None:
            return probe(request)
        bearer_view = _bearer_endpoints.get(request.path_info)
        if bearer_view is not None and "HTTP_AUTHORIZATION" in request.META:
            # Scrapers come by IP or service name too; a request carrying its own credential
            # needs neither the host check nor a session. Without one it takes the normal
            # stack (a logged-in browser session).
            return bearer_view(request)
        return self.get_response(request)
