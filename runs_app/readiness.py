"""What /readyz needs from the runs side: some runscheduler heartbeat is fresh.

Registered with the site's probe in `RunsAppConfig.ready`, so `fastflow_site` imports no app.
"""

from __future__ import annotations

from django.conf import settings

from runs_app.models import EngineInstance


def engine_heartbeat_readiness() -> str:
    """Empty while some heartbeat is younger than FASTFLOW_HEARTBEAT_STALE_SECONDS, else why."""
    if EngineInstance.objects.with_fresh_heartbeat().exists():
        return ""
    stale = settings.FASTFLOW_HEARTBEAT_STALE_SECONDS
    return f"no runscheduler heartbeat in the last {stale:g} s (is the engine running?)"
