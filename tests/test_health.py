from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from runs_app.models import EngineInstance


def engine(seconds_ago: float) -> EngineInstance:
    return EngineInstance.objects.create(
        id=f"host:{seconds_ago}",
        hostname="host",
        pid=1,
        executor="local",
        heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago),
    )


def test_it_is_alive_without_touching_the_database():
    # No django_db mark: any query would raise, so this also proves the probe needs no DB.
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_is_ready_with_a_fresh_engine_heartbeat(settings):
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 30
    engine(seconds_ago=5)

    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_it_is_not_ready_without_a_fresh_heartbeat(settings):
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 30
    engine(seconds_ago=120)

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "heartbeat" in response.json()["reason"]


@pytest.mark.django_db
def test_it_is_not_ready_when_the_database_fails():
    engine(seconds_ago=0)
    # A real database error: the table the probe reads is gone (rolled back after the test).
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE engine_instances")

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["reason"].startswith("database")


@pytest.mark.django_db
def test_it_needs_no_authentication_and_answers_head():
    engine(seconds_ago=0)

    assert Client().head("/healthz").status_code == 200
    assert Client().head("/readyz").status_code == 200
    assert Client().post("/healthz").status_code == 405


@pytest.mark.django_db
def test_probes_answer_whatever_the_host_header(settings):
    # Kubernetes probes by pod IP; that Host is not in ALLOWED_HOSTS.
    settings.ALLOWED_HOSTS = ["fastflow.example"]
    engine(seconds_ago=1)
    client = Client(HTTP_HOST="10.1.2.3:8000")

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"status": "ok"}
    assert client.post("/healthz").status_code == 405
    # Everything else still enforces ALLOWED_HOSTS.
    assert client.get("/api/schema/").status_code == 400
