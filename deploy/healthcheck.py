"""The image's HEALTHCHECK: `python deploy/healthcheck.py` (via `fastflow healthcheck`).

One image runs every role, so the check looks at what the container runs (PID 1's command
line, behind `docker-init` when compose says `init: true`):

- the web server (gunicorn): `GET /healthz` on 127.0.0.1:$FASTFLOW_PORT answers 200 — no
  Django start-up, no database;
- the engine (`runscheduler`): its heartbeat row, written from this container's host name, is
  fresher than FASTFLOW_HEARTBEAT_STALE_SECONDS;
- anything else (a one-off `migrate`, `createadmin`): healthy while it runs.

Exit code 0 = healthy, 1 = unhealthy (Docker's contract), with one line saying why.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def container_role(cmdline: bytes) -> str:
    args = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    words = {Path(arg).name for arg in args}
    if "runscheduler" in words:
        return "engine"
    if words & {"gunicorn", "web"} or words <= {"fastflow", "docker-init", "--", "tini"}:
        return "web"  # `fastflow` alone runs the default command: the web server
    return "other"


def check_web() -> str:
    port = os.environ.get("FASTFLOW_PORT", "8000")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - our own server
            return "" if response.status == 200 else f"{url} answered {response.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def check_engine() -> str:
    import django

    sys.path.insert(0, str(BASE_DIR))  # run as a script: the project is the parent folder

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastflow_site.settings")
    django.setup()
    from datetime import timedelta

    from django.conf import settings
    from django.db import DatabaseError
    from django.utils import timezone

    from runs_app.models import EngineInstance

    cutoff = timezone.now() - timedelta(seconds=settings.FASTFLOW_HEARTBEAT_STALE_SECONDS)
    try:
        fresh = EngineInstance.objects.filter(
            hostname=socket.gethostname(), heartbeat_at__gte=cutoff
        ).exists()
    except DatabaseError as exc:
        return f"database: {exc.__class__.__name__}: {exc}"
    if fresh:
        return ""
    return (
        f"no heartbeat from this container ({socket.gethostname()}) in the last "
        f"{settings.FASTFLOW_HEARTBEAT_STALE_SECONDS:g} s"
    )


def main() -> int:
    try:
        role = container_role(Path("/proc/1/cmdline").read_bytes())
    except OSError:
        role = "other"
    problem = {"web": check_web, "engine": check_engine}.get(role, lambda: "")()
    print(f"{role}: {problem or 'ok'}")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
