"""The engine process (`manage.py runscheduler`): one `Engine`, stepped by the command's loop.

Threads: the main loop (claim + dispatch, cancellations, leader lease, schedule mirror), one
worker per running run, a heartbeat, a periodic reconcile + executor health check, and while
this engine leads: APScheduler, the pipelines/schedules re-sync and the cache warmer.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from fastflow_site.logformat import log_process_fields
from notifications_app.chore import NotificationChore
from runs_app.engine.base import Executor, InfrastructureError
from runs_app.engine.cleanup import CHECK_SECONDS as CLEANUP_CHECK_SECONDS
from runs_app.engine.cleanup import RetentionChore
from runs_app.engine.dispatcher import Dispatcher
from runs_app.engine.housekeeping import LEADER_TICK_SECONDS, LeaderChores, Periodic
from runs_app.engine.identity import (
    engine_heartbeat,
    engine_identity,
    engine_register,
    engine_unregister,
    heartbeat_interval,
)
from runs_app.engine.lease import RENEW_SECONDS, SCHEDULER_LEASE, lease_acquire, lease_release
from runs_app.engine.listen import Listener, listener_for
from runs_app.engine.notify import RunningWatch
from runs_app.engine.output_shipper import OutputArchiveChore, OutputShipper
from runs_app.engine.reconcile import reconcile
from runs_app.engine.scheduler import ScheduleMirror
from runs_app.engine.warmup import CacheWarmer
from runs_app.models import PipelineRun
from runs_app.object_store import object_store_enabled
from runs_app.wakeup import WAKE_CANCEL

logger = logging.getLogger(__name__)

# Without a working wake-up channel (listen.py) a due run is noticed within this poll;
# `exists()` on the (status, queued_at) index is cheap. With one, the engine polls every
# FASTFLOW_DISPATCH_POLL_SECONDS.
FALLBACK_POLL_SECONDS = 0.05
# When runs are due but the limits hold them back, claiming (a write transaction) is retried
# at this pace, or at once when one of our own runs ends.
BLOCKED_RETRY_SECONDS = 0.5
CANCEL_CHECK_SECONDS = 0.25
MIRROR_SYNC_SECONDS = 2.0
RECONCILE_SECONDS = 10.0
ARCHIVE_SWEEP_SECONDS = 30.0
CONNECTION_RECYCLE_SECONDS = 1.0


class Engine:
    def __init__(
        self, *, executor: Executor, schedules: bool = True, slots: int | None = None
    ) -> None:
        self.engine_id = engine_identity()
        self.executor = executor
        self.schedules = schedules
        # Object store: live output reaches the web process through the database.
        self.output = OutputShipper(engine_id=self.engine_id) if object_store_enabled() else None
        self.dispatcher = Dispatcher(
            engine_id=self.engine_id,
            executor=executor,
            slots=slots or settings.FASTFLOW_MAX_CONCURRENT_RUNS,
            output=self.output,
        )
        self.mirror = ScheduleMirror()
        self.warmer = CacheWarmer(executor)
        self.leader = False
        self.healthy = True
        self._leader_chores: Periodic | None = None
        self._threads: list[Periodic] = []
        self.listener: Listener | None = None
        self._mirror_due = 0.0
        self._lease_due = 0.0
        self._cancel_due = 0.0
        self._claim_due = 0.0
        self._recycle_due = 0.0
        self._backlog = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        log_process_fields(engine_id=self.engine_id)
        engine_register(engine_id=self.engine_id, executor=self.executor.name)
        self.check_executor()
        if self.healthy:
            reconcile(engine_id=self.engine_id, executor=self.executor, dispatcher=self.dispatcher)
        self.warmer.start()
        notifications = NotificationChore(
            engine_id=self.engine_id, is_leader=self._leads, watch=RunningWatch().check
        )
        self.listener = listener_for(engine_id=self.engine_id, on_wake=self._on_wake)
        if self.listener is not None:
            self.listener.start()
        self._threads = [
            Periodic("heartbeat", heartbeat_interval(), self._heartbeat),
            Periodic("reconcile", RECONCILE_SECONDS, self._reconcile),
            Periodic("notifications", settings.FASTFLOW_NOTIFY_POLL_SECONDS, notifications),
            Periodic(
                "retention",
                CLEANUP_CHECK_SECONDS,
                RetentionChore(is_leader=self._leads, engine_id=self.engine_id),
            ),
        ]
        if self.output is not None:
            self._threads += [
                Periodic(
                    "live-output",
                    settings.FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS,
                    self.output.ship_all,
                ),
                Periodic("output-archive", ARCHIVE_SWEEP_SECONDS, OutputArchiveChore()),
            ]
        for thread in self._threads:
            thread.start()
        logger.info(
            "engine %s started (executor %s, %d slots)",
            self.engine_id,
            self.executor.name,
            self.dispatcher.slots,
        )

    def stop(self) -> set[str]:
        """Shut down; returns the runs left running for the next engine to re-attach."""
        logger.info("engine %s stopping", self.engine_id)
        self.dispatcher.stop(timeout=settings.FASTFLOW_CANCEL_GRACE_SECONDS + 15)
        self._resign()
        for thread in self._threads:
            thread.stop()
        if self.listener is not None:
            self.listener.stop()
        self.warmer.stop()
        try:
            self.executor.close()
        except Exception:  # a failing close must not keep the engine row alive
            logger.exception("closing the executor failed")
        try:
            engine_unregister(engine_id=self.engine_id)
        except DatabaseError:
            logger.exception("could not remove the engine row (it will go stale)")
        left = self.dispatcher.active_run_ids()
        if left:
            logger.info("left %d run(s) running for the next engine to re-attach", len(left))
        return left

    # --- one loop iteration ------------------------------------------------------------------

    def step(self) -> None:
        now = time.monotonic()
        if now >= self._recycle_due and not connection.in_atomic_block:
            close_old_connections()
            self._recycle_due = now + CONNECTION_RECYCLE_SECONDS
        if self.schedules and now >= self._lease_due:
            self._lead()
            self._lease_due = now + RENEW_SECONDS
        if self.leader and now >= self._mirror_due:
            self.mirror.sync()
            self._mirror_due = now + MIRROR_SYNC_SECONDS
        if now >= self._cancel_due:
            self.dispatcher.check_cancellations()
            self._cancel_due = now + CANCEL_CHECK_SECONDS
        if self.healthy and now >= self._claim_due and self.dispatcher.free_slots > 0:
            backlog, self._backlog = self._backlog, False
            if not backlog and not self._runs_due():
                self._claim_due = now + self.poll_seconds
                return
            wanted = self.dispatcher.free_slots
            started = self.dispatcher.dispatch()
            if started:
                self._claim_due = now  # more may be due: look again next round
                # It got all it asked for: more are probably queued (a burst), so the next
                # claim goes ahead without asking "any run due?" first.
                self._backlog = started == wanted
            elif backlog:
                self._claim_due = now  # the backlog was gone: ask properly next round
            else:
                self._claim_due = now + BLOCKED_RETRY_SECONDS  # due, but the limits hold them

    @property
    def poll_seconds(self) -> float:
        """The fallback poll: long while wake-ups reach us, fast while they cannot."""
        if self.listener is not None and self.listener.healthy:
            return settings.FASTFLOW_DISPATCH_POLL_SECONDS
        return min(FALLBACK_POLL_SECONDS, settings.FASTFLOW_DISPATCH_POLL_SECONDS)

    def wait(self, seconds: float | None = None) -> None:
        """Sleep until the next thing is due (a poll, a cancel check, the lease), or until
        woken: one of our runs ended (a slot is free), a run was queued, a cancel requested."""
        if seconds is None:
            dues = [self._recycle_due]
            if self.dispatcher.free_slots > 0:
                # With every slot busy there is nothing to claim: a run ending sets the wake-up
                # (after freeing its slot). A claim time in the past here made the loop spin,
                # a core of CPU taken from the runs while the engine was full.
                dues.append(self._claim_due)
            if self.schedules:
                dues.append(self._lease_due)
            if self.leader:
                dues.append(self._mirror_due)
            if self.dispatcher.free_slots < self.dispatcher.slots:
                dues.append(self._cancel_due)  # only runs we drive can be cancelled
            seconds = min(max(min(dues) - time.monotonic(), 0.0), self.poll_seconds)
        if self.dispatcher.wakeup.wait(seconds):
            self.dispatcher.wakeup.clear()
            self._claim_due = 0.0

    def wake(self) -> None:
        self.dispatcher.wakeup.set()

    def _on_wake(self, reason: str) -> None:
        """From the listener thread: a run was queued or a cancel requested."""
        if reason == WAKE_CANCEL:
            self._cancel_due = 0.0
        self.wake()

    def schedules_changed(self) -> None:
        self._mirror_due = 0.0

    # --- pieces ------------------------------------------------------------------------------

    @staticmethod
    def _runs_due() -> bool:
        return PipelineRun.objects.due(timezone.now()).exists()

    def _leads(self) -> bool:
        return self.leader

    def check_executor(self) -> None:
        try:
            self.executor.check()
        except InfrastructureError as exc:
            if self.healthy:
                logger.error("executor %s unusable, runs wait: %s", self.executor.name, exc)
            self.healthy = False
            return
        if not self.healthy:
            logger.info("executor %s is back", self.executor.name)
        self.healthy = True

    def _heartbeat(self) -> None:
        engine_heartbeat(engine_id=self.engine_id, executor=self.executor.name)

    def _reconcile(self) -> None:
        self.check_executor()
        if self.healthy:
            reconcile(engine_id=self.engine_id, executor=self.executor, dispatcher=self.dispatcher)

    def _lead(self) -> None:
        try:
            holds = lease_acquire(name=SCHEDULER_LEASE, holder=self.engine_id)
        except DatabaseError:
            logger.exception("scheduler lease renewal failed; stepping down")
            holds = False
        if holds and not self.leader:
            self.leader = True
            logger.info("engine %s is the scheduler leader", self.engine_id)
            self.mirror.start()
            self._mirror_due = 0.0
            chores = LeaderChores(
                warmer=self.warmer,
                on_schedules_changed=self.schedules_changed,
                engine_id=self.engine_id,
            )
            self._leader_chores = Periodic("leader-chores", LEADER_TICK_SECONDS, chores)
            self._leader_chores.start()
        elif not holds and self.leader:
            logger.warning("engine %s lost the scheduler lease", self.engine_id)
            self._step_down()

    def _step_down(self) -> None:
        self.leader = False
        self.mirror.stop()
        if self._leader_chores is not None:
            self._leader_chores.stop()
            self._leader_chores = None

    def _resign(self) -> None:
        if not self.leader:
            return
        self._step_down()
        try:
            lease_release(name=SCHEDULER_LEASE, holder=self.engine_id)
        except DatabaseError:
            logger.exception("could not release the scheduler lease (it will expire)")
