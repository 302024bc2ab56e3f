"""Liveness and readiness probes: unauthenticated, cheap, no sessions touched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_safe


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
    """Ready = the database answers and some runscheduler heartbeat is fresh."""
    from runs_app.models import EngineInstance

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        cutoff = timezone.now() - timedelta(seconds=settings.FASTFLOW_HEARTBEAT_STALE_SECONDS)
        engine_alive = EngineInstance.objects.filter(heartbeat_at__gte=cutoff).exists()
    except DatabaseError as exc:
        return _probe(
            {"status": "unavailable", "reason": f"database: {exc.__class__.__name__}"}, 503
        )
    if not engine_alive:
        return _probe(
            {
                "status": "unavailable",
                "reason": "no runscheduler heartbeat in the last "
                f"{settings.FASTFLOW_HEARTBEAT_STALE_SECONDS:g} s (is the engine running?)",
            },
            503,
        )
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
        return self.get_response(request)
