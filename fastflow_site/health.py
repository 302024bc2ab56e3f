"""Liveness and readiness probes: unauthenticated, cheap, no sessions touched."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    from runs_app.models import EngineInstance

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        cutoff = timezone.now() - timedelta(seconds=settings.FASTFLOW_HEARTBEAT_STALE_SECONDS)
        engine_alive = EngineInstance.objects.filter(heartbeat_at__gte=cutoff).exists()
    except DatabaseError as exc:
        return JsonResponse(
            {"status": "unavailable", "reason": f"database: {exc.__class__.__name__}"}, status=503
        )
    if not engine_alive:
        return JsonResponse(
            {"status": "unavailable", "reason": "no runscheduler heartbeat in time"}, status=503
        )
    return JsonResponse({"status": "ok"})
