"""Engine chores: the `Periodic` thread that runs background jobs, and what only the scheduler
leader does (git sync, re-sync pipelines → schedules → cache warm-up requests, prune old
checkouts, purge expired tokens, old job logs, expired rate-limit/replay rows and old hourly run
statistics). Who this engine is and its heartbeat live in `identity.py`; warming the cache
itself in `warmup.py`; git sync in `gitsync_app`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone
from django_apscheduler.models import DjangoJobExecution

from accounts_app.services import tokens_purge_expired
from audit_app.context import AuditContext
from fastflow_site.throttle import throttle_purge_expired
from gitsync_app.errors import GitSyncError
from gitsync_app.services import checkouts_prune, repository_sync, repository_sync_due
from pipelines_app.errors import PipelinesDirError
from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.engine.warmup import CacheWarmer
from runs_app.period_stats import period_stats_prune
from runs_app.schedule_services import schedules_sync_from_pipelines
from runs_app.services import run_commits_in_use

logger = logging.getLogger(__name__)

JOB_EXECUTION_MAX_AGE = timedelta(days=7)
PURGE_EVERY_SECONDS = 3600.0
# A failed warm-up (index unreachable, missing CA bundle, ...) is tried again when the leader
# starts and then at this pace, so a fixed network or configuration is picked up without
# having to touch requirements.txt.
WARMUP_RETRY_SECONDS = 600.0
# The leader's chores thread wakes this often: a requested git sync starts within a second.
LEADER_TICK_SECONDS = 1.0
# Checkouts left behind by finished runs are looked for at this pace between syncs.
CHECKOUT_PRUNE_SECONDS = 60.0


class Periodic(threading.Thread):
    """Call `action` every `every` seconds in a daemon thread; errors are logged, not fatal."""

    def __init__(self, name: str, every: float, action: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.every = every
        self.action = action
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if not connection.in_atomic_block:
                close_old_connections()
            try:
                self.action()
            except Exception:  # noqa: BLE001 - a failing chore must not end the thread
                logger.exception("%s failed", self.name)
            self.stopped.wait(self.every)
        connection.close()

    def stop(self) -> None:
        self.stopped.set()


class LeaderChores:
    """What only the scheduler leader does, called every LEADER_TICK_SECONDS: a git sync when
    one is requested or due, the pipelines re-sync every FASTFLOW_SYNC_INTERVAL_SECONDS (and
    at once after a git sync moved to a new commit), the hourly purge."""

    def __init__(
        self,
        *,
        warmer: CacheWarmer | None,
        on_schedules_changed: Callable[[], None],
        engine_id: str = "engine",
    ):
        self.warmer = warmer
        self.on_schedules_changed = on_schedules_changed
        self.engine_id = engine_id
        self.last_purge = 0.0
        self._sync_due = 0.0
        self._prune_due = 0.0
        self._warmup_retried: dict[str, float] = {}

    def __call__(self) -> None:
        now = time.monotonic()
        if self.git_sync() or now >= self._sync_due:
            self._sync_due = now + settings.FASTFLOW_SYNC_INTERVAL_SECONDS
            self.sync()
        self.purge()

    def git_sync(self) -> bool:
        """Sync the git repository if a sync is requested or the auto-sync interval passed;
        True when the pipelines directory moved to another commit. In between, remove
        checkouts no run needs any more."""
        if not repository_sync_due():
            if time.monotonic() >= self._prune_due:
                self._prune_due = time.monotonic() + CHECKOUT_PRUNE_SECONDS
                checkouts_prune(holder=self.engine_id, commits_in_use=run_commits_in_use)
            return False
        try:
            result = repository_sync(
                holder=self.engine_id,
                commits_in_use=run_commits_in_use,
                audit=AuditContext.engine(name=self.engine_id),
            )
        except GitSyncError as exc:  # not configured any more, or another sync runs
            logger.info("git sync skipped: %s", exc)
            return False
        return result.ok and result.changed

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
        # requirements_hash is set when uv installs anything (requirements.txt, a notebook's
        # runner packages).
        never_warmed = (
            Pipeline.objects.exclude(requirements_hash="")
            .filter(
                is_missing=False,
                last_cache_warmup__isnull=True,
                cache_warmup_error="",
            )
            .values_list("pipeline_name", flat=True)
        )
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
        failed = (
            Pipeline.objects.filter(is_missing=False)
            .exclude(requirements_hash="")
            .exclude(cache_warmup_error="")
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
