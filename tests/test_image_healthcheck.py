"""The image's HEALTHCHECK (deploy/healthcheck.py): which role the container runs, and the
engine's check against a real database. The web check and the whole image run in
scripts/smoke-image.sh."""

from __future__ import annotations

import importlib.util
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from runs_app.models import EngineInstance

_spec = importlib.util.spec_from_file_location(
    "healthcheck", Path(__file__).resolve().parent.parent / "deploy" / "healthcheck.py"
)
healthcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(healthcheck)
check_engine, container_role = healthcheck.check_engine, healthcheck.container_role


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (
            b"/opt/venv/bin/python\0/opt/venv/bin/gunicorn\0-c\0python:x\0fastflow_site.wsgi\0",
            "web",
        ),
        (b"/sbin/docker-init\0--\0/usr/local/bin/fastflow\0web\0", "web"),
        (b"/sbin/docker-init\0--\0/usr/local/bin/fastflow\0", "web"),  # the default command
        (b"python\0/app/manage.py\0runscheduler\0--no-schedules\0", "engine"),
        (b"/sbin/docker-init\0--\0/usr/local/bin/fastflow\0runscheduler\0", "engine"),
        (b"python\0/app/manage.py\0migrate\0--no-input\0", "other"),
    ],
)
def test_it_tells_the_role_from_the_containers_command(cmdline, role):
    assert container_role(cmdline) == role


@pytest.mark.django_db
def test_the_engine_is_healthy_while_this_hosts_heartbeat_is_fresh(settings):
    settings.FASTFLOW_HEARTBEAT_STALE_SECONDS = 30
    engine = EngineInstance.objects.create(
        id="me:1:ns.1", hostname=socket.gethostname(), pid=1, executor="docker"
    )
    assert check_engine() == ""

    EngineInstance.objects.filter(id=engine.id).update(
        heartbeat_at=timezone.now() - timedelta(seconds=60)
    )
    assert "no heartbeat from this container" in check_engine()


@pytest.mark.django_db
def test_another_hosts_heartbeat_does_not_make_this_engine_healthy():
    EngineInstance.objects.create(id="other:1:ns.1", hostname="other", pid=1, executor="docker")

    assert check_engine().startswith("no heartbeat from this container")
