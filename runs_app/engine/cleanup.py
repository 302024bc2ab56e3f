"""The leader's retention pass, in its own thread: runs beyond their retention (batched, so
dispatch never waits for more than one short batch), orphaned files, old notification history.
It stops between batches as soon as this engine is no longer the leader."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit_app.context import AuditContext
from audit_app.services import audit_purge_old
from runs_app.retention import runs_retention_apply

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
# After an engine becomes leader the first pass waits a little: a restart loop must not turn
# into a deletion loop, and a fresh engine has more urgent work.
FIRST_PASS_DELAY_SECONDS = 60.0


def notification_history_purge() -> int:
    from notifications_app.models import DeliveryStatus, NotificationEvent

    cutoff = timezone.now() - timedelta(days=settings.FASTFLOW_NOTIFY_HISTORY_DAYS)
    old = NotificationEvent.objects.filter(created_at__lt=cutoff).exclude(
        deliveries__status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    )
    deleted, _ = old.delete()
    return deleted


class RetentionChore:
    def __init__(self, *, is_leader: Callable[[], bool], engine_id: str = "engine") -> None:
        self.is_leader = is_leader
        self.engine_id = engine_id
        self._due: float | None = None

    def __call__(self) -> None:
        now = time.monotonic()
        if not self.is_leader():
            self._due = None
            return
        if self._due is None:
            self._due = now + min(
                FIRST_PASS_DELAY_SECONDS, settings.FASTFLOW_RETENTION_INTERVAL_SECONDS
            )
        if now < self._due:
            return
        self._due = now + settings.FASTFLOW_RETENTION_INTERVAL_SECONDS
        report = runs_retention_apply(
            should_continue=self.is_leader, audit=AuditContext.engine(name=self.engine_id)
        )
        purged = notification_history_purge() + audit_purge_old()
        if report.total_runs or report.orphan_files or purged:
            logger.info(
                "retention: deleted %d run(s), %d file(s) (%d bytes), %d orphaned file(s); "
                "%d old notification record(s)%s",
                report.total_runs,
                report.files,
                report.bytes,
                report.orphan_files,
                purged,
                " (stopped: no longer the leader)" if report.stopped_early else "",
            )
