"""What /readyz needs from the runs side: some runscheduler heartbeat is fresh, and the disk
that holds the run logs has room.

Registered with the site's probe in `RunsAppConfig.ready`, so `fastflow_site` imports no app.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from runs_app.models import EngineInstance
from runs_app.outcome import format_bytes


def engine_heartbeat_readiness() -> str:
    """Empty while some heartbeat is younger than FASTFLOW_HEARTBEAT_STALE_SECONDS, else why."""
    if EngineInstance.objects.with_fresh_heartbeat().exists():
        return ""
    stale = settings.FASTFLOW_HEARTBEAT_STALE_SECONDS
    return f"no runscheduler heartbeat in the last {stale:g} s (is the engine running?)"


def log_disk_readiness() -> str:
    """Empty while the log disk has at least FASTFLOW_LOG_DISK_MIN_FREE_BYTES free, else why.
    A full log disk does not stop runs (their output is dropped and counted), so it is reported
    here, before logs go missing."""
    path = Path(settings.LOGS_DIR)
    while not path.exists() and path != path.parent:
        path = path.parent  # not created yet: the disk it will be on
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return f"log disk: cannot read the free space of {path}: {exc.strerror or exc}"
    minimum = settings.FASTFLOW_LOG_DISK_MIN_FREE_BYTES
    if free >= minimum:
        return ""
    return (
        f"log disk: {format_bytes(free)} free at {path}, below "
        f"FASTFLOW_LOG_DISK_MIN_FREE_BYTES ({format_bytes(minimum)}); run output is being "
        "or will be dropped"
    )
