"""Engine chores: the `Periodic` thread that runs background jobs, and what only the scheduler
leader does (re-sync pipelines → schedules → cache warm-up requests, purge expired tokens, old
job logs, expired rate-limit/replay rows and old hourly run statistics). Who this engine is and
its heartbeat live in `identity.py`; warming the cache itself in `warmup.py`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.db import close_old_connections, connection
from django.utils import timezone
from django_apscheduler.models import DjangoJobExecution

from accounts_app.services import tokens_purge_expired
from fastflow_site.throttle import throttle_purge_expired
from pipelines_app.errors import PipelinesDirError
from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.engine.warmup import CacheWarmer
from runs_app.period_stats import period_stats_prune
from runs_app.schedule_services import schedules_sync_from_pipelines

logger = logging.getLogger(__name__)

JOB_EXECUTION_MAX_AGE = timedelta(days=7)
PURGE_EVERY_SECONDS = 3600.0
# A failed warm-up (index unreachable, missing CA bundle, ...) is tried again when the leader
# starts and then at this pace, so a fixed network or configuration is picked up without
# having to touch requirements.txt.
WARMUP_RETRY_SECONDS = 600.0


class Periodic(threading.Thread):
    """Call `action` every `every` seconds in a daemon thread; errors are logged, not fatal."""

    def __init__(self, name: str, every: float, action: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.every = every
        self.action = action
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            # Around each round, as around a request: a broken or expired connection is
            # dropped, and a pooled one goes back to the pool while the thread sleeps.
            if not connection.in_atomic_block:
                close_old_connections()
            try:
                self.action()
            except Exception:  # noqa: BLE001 - a failing chore must not end the thread
                logger.exception("%s failed", self.name)
            if not connection.in_atomic_block:
                close_old_connections()
            self.stopped.wait(self.every)
        connection.close()

    def stop(self) -> None:
        self.stopped.set()


class LeaderChores:
    """What only the scheduler leader does, on FASTFLOW_SYNC_INTERVAL_SECONDS."""

    def __init__(self, *, warmer: CacheWarmer | None, on_schedules_changed: Callable[[], None]):
        self.warmer = warmer
        self.on_schedules_changed = on_schedules_changed
        self.last_purge = 0.0
        self._warmup_retried: dict[str, float] = {}

    def __call__(self) -> None:
        self.sync()
        self.purge()

    def sync(self) -> None:
        try:
            report = pipelines_sync()
        except PipelinesDirError as exc:
            # Nothing is marked missing on a bad mount; schedules and warm-ups wait for it.
            logger.warning("pipelines not re-synced: %s", exc)
            return
        schedules = schedules_sync_from_pipelines()
        if schedules.changed:
            logger.info(
                "schedules from pipeline.json: %d created, %d updated, %d deleted",
                len(schedules.created),
                len(schedules.updated),
                len(schedules.deleted),
            )
            self.on_schedules_changed()
        if self.warmer is None:
            return
        never_warmed = Pipeline.objects.filter(
            has_requirements=True,
            is_missing=False,
            last_cache_warmup__isnull=True,
            cache_warmup_error="",
        ).values_list("pipeline_name", flat=True)
        names = list(
            dict.fromkeys(
                [
                    *report.requirements_changed,
                    *[name for name in never_warmed if self._warmup_due(name)],
                    *self._failed_warmups_due(),
                ]
            )
        )
        if names:
            now = time.monotonic()
            self._warmup_retried.update(dict.fromkeys(names, now))
            self.warmer.request(names)

    def _failed_warmups_due(self) -> list[str]:
        """Pipelines whose last warm-up failed: retried once per leader term right away, then
        every WARMUP_RETRY_SECONDS."""
        failed = Pipeline.objects.filter(has_requirements=True, is_missing=False).exclude(
            cache_warmup_error=""
        )
        return [n for n in failed.values_list("pipeline_name", flat=True) if self._warmup_due(n)]

    def _warmup_due(self, name: str) -> bool:
        """Not requested in the last WARMUP_RETRY_SECONDS (a warm-up still running is not
        queued again at every sync)."""
        last = self._warmup_retried.get(name)
        return last is None or time.monotonic() - last >= WARMUP_RETRY_SECONDS

    def purge(self) -> None:
        now = timezone.now().timestamp()
        if now - self.last_purge < PURGE_EVERY_SECONDS:
            return
        self.last_purge = now
        purged = tokens_purge_expired()
        if purged:
            logger.info("purged %s expired API token(s)", purged)
        DjangoJobExecution.objects.delete_old_job_executions(
            int(JOB_EXECUTION_MAX_AGE.total_seconds())
        )
        purged = throttle_purge_expired()
        if purged:
            logger.info("purged %s expired rate-limit and replay-protection row(s)", purged)
        pruned = period_stats_prune()
        if pruned:
            logger.info("deleted %s hourly run statistics row(s) (the daily ones remain)", pruned)
