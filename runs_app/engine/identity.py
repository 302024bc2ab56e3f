"""Who this engine is and which engines are alive: its identity, its `EngineInstance` row and
heartbeat, and the liveness test reconciliation uses to find runs whose engine died."""

from __future__ import annotations

import os
import secrets
import socket

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs_app.models import EngineInstance


def _pid_namespace() -> str:
    """This process's PID namespace (two containers sharing a host name, e.g. with host
    networking, have different ones); "" where it cannot be read."""
    try:
        return f"{os.stat('/proc/self/ns/pid').st_ino:x}"
    except OSError:
        return ""


def engine_identity() -> str:
    """`<hostname>:<pid>:<pid namespace>.<random>`."""
    return f"{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}.{secrets.token_hex(4)}"


def _pid_visible_here(engine: EngineInstance) -> bool:
    """Whether `engine.pid` means the same process here: same host and same PID namespace.
    Otherwise a pid that does not exist here says nothing about that engine."""
    namespace = _pid_namespace()
    return (
        bool(namespace)
        and engine.hostname == socket.gethostname()
        and engine.id.rsplit(":", 1)[-1].startswith(f"{namespace}.")
    )


def engine_register(*, engine_id: str, executor: str) -> EngineInstance:
    return EngineInstance.objects.create(
        id=engine_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        executor=executor,
    )


def engine_heartbeat(*, engine_id: str, executor: str) -> None:
    """Refresh our row; re-create it if another engine swept it away as stale."""
    if not EngineInstance.objects.filter(id=engine_id).update(heartbeat_at=timezone.now()):
        engine_register(engine_id=engine_id, executor=executor)


def engine_unregister(*, engine_id: str) -> None:
    EngineInstance.objects.filter(id=engine_id).delete()


def heartbeat_interval() -> float:
    return max(min(settings.FASTFLOW_HEARTBEAT_STALE_SECONDS / 4, 5.0), 0.5)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def live_engine_ids(*, me: str) -> set[str]:
    """Engines with a fresh heartbeat, minus those on this host (and in this PID namespace)
    whose process is gone (a kill -9 is then noticed at once instead of after
    FASTFLOW_HEARTBEAT_STALE_SECONDS)."""
    live = {me}
    for engine in EngineInstance.objects.with_fresh_heartbeat():
        if engine.id != me and _pid_visible_here(engine) and _process_gone(engine.pid):
            continue
        live.add(engine.id)
    return live


def engines_sweep(*, live: set[str]) -> int:
    """Delete rows of engines that are no longer alive (after their runs were reconciled).
    A clean shutdown removes its own row, so every row swept here is an engine gone silent."""
    from runs_app.notify import notify_engine_silent  # the logic layer imports identity

    deleted = 0
    for engine in EngineInstance.objects.exclude(id__in=live):
        with transaction.atomic():
            gone = EngineInstance.objects.filter(id=engine.id, heartbeat_at=engine.heartbeat_at)
            if gone.delete()[0]:
                deleted += 1
                notify_engine_silent(
                    engine_id=engine.id, hostname=engine.hostname, heartbeat_at=engine.heartbeat_at
                )
    return deleted
