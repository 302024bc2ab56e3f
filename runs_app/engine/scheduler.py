"""APScheduler inside the leader engine: mirrors enabled `ScheduledJob` rows into jobs.

Only the engine holding the "scheduler" lease runs a `BackgroundScheduler`, with
django-apscheduler's `DjangoJobStore`, so jobs keep their next fire time across restarts and
leader hand-overs: a tick missed while no engine ran is caught up once (coalesce) if it is
within FASTFLOW_SCHEDULE_GRACE_SECONDS, never piled up.

A job only enqueues a run (a daemon's `restart_interval` job also stops the running one). Its
idempotency key names the job and the scheduled fire time, so a tick fired twice (an old leader
that has not yet noticed it lost the lease) still makes one run.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from django.conf import settings
from django.db import close_old_connections, connection
from django_apscheduler.jobstores import DjangoJobStore

from audit_app.context import AuditContext
from runs_app.errors import RunError
from runs_app.models import ScheduledJob, ScheduleSource, TriggeredBy
from runs_app.notify import notify_schedule_late
from runs_app.schedule_services import schedule_idempotency_key, scheduledjob_trigger
from runs_app.services import run_daemon_restart, run_enqueue

logger = logging.getLogger(__name__)

JOB_FUNCTION = "runs_app.engine.scheduler:fire_schedule"


def _fresh_connections(func: Callable[..., None]) -> Callable[..., None]:
    """APScheduler's threads outlive requests: drop broken or expired connections around each
    job, as a request would (never inside an open transaction, e.g. a test's)."""

    @wraps(func)
    def wrapper(*args: object, **kwargs: object) -> None:
        if not connection.in_atomic_block:
            close_old_connections()
        try:
            func(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:
                close_old_connections()

    return wrapper


@_fresh_connections
def fire_schedule(scheduled_job_id: str, version: str = "", fire_time: str = "") -> None:
    """The APScheduler job function: enqueue one run for one tick of one schedule."""
    job = ScheduledJob.objects.filter(id=scheduled_job_id).first()
    if job is None or not job.enabled:
        logger.info("schedule %s is gone or disabled; tick %s ignored", scheduled_job_id, fire_time)
        return
    tick = fire_time or datetime.now(UTC).isoformat()
    _notify_if_late(job, tick, missed=False)
    if job.source == ScheduleSource.DAEMON_RESTART:
        try:
            run = run_daemon_restart(
                pipeline=job.pipeline_id,
                scheduled_job=job,
                idempotency_key=f"daemon_interval:{job.id}:{tick}",
            )
        except RunError as exc:
            logger.warning("restart_interval of %s did not restart it at %s: %s", job, tick, exc)
            return
        logger.info("restart_interval of %s: run %s replaces the running one", job, run.id)
        return
    try:
        run = run_enqueue(
            pipeline=job.pipeline_id,
            triggered_by=TriggeredBy.SCHEDULER,
            scheduled_job=job,
            run_config_id=job.run_config_id or None,
            idempotency_key=schedule_idempotency_key(job_id=job.id, fire_time=tick),
            audit=AuditContext.schedule(job_id=job.id),
        )
    except RunError as exc:
        logger.warning("schedule %s (%s) did not start a run at %s: %s", job.id, job, tick, exc)
        return
    logger.info("schedule %s (%s) queued run %s for %s", job.id, job, run.id, tick)


def _notify_if_late(job: ScheduledJob, tick: str, *, missed: bool) -> None:
    """A tick fired late (the engine was down or busy) or missed beyond the grace time."""
    try:
        late = (datetime.now(UTC) - datetime.fromisoformat(tick)).total_seconds()
    except ValueError:
        return
    if not missed and late <= settings.FASTFLOW_NOTIFY_SCHEDULE_LATE_SECONDS:
        return
    try:
        notify_schedule_late(
            job_id=job.id,
            pipeline_name=job.pipeline_id,
            run_config_id=job.run_config_id,
            tick=tick,
            late=late,
            missed=missed,
        )
    except Exception:  # noqa: BLE001 - a notification problem must not stop the tick
        logger.exception("schedule %s: could not record the late tick %s", job.id, tick)


@_fresh_connections
def _on_missed(event: JobExecutionEvent) -> None:
    """APScheduler skipped a tick older than the grace time (coalesced: at most one)."""
    job = ScheduledJob.objects.filter(id=event.job_id).first()
    if job is None or not job.enabled:
        return
    tick = event.scheduled_run_time.astimezone(UTC).isoformat()
    logger.warning("schedule %s (%s) missed its tick %s", job.id, job, tick)
    _notify_if_late(job, tick, missed=True)


class _WithFireTime:
    """A job as seen by one execution: its kwargs carry the tick being fired."""

    def __init__(self, job: Job, fire_time: datetime) -> None:
        self._job = job
        self.kwargs = {**job.kwargs, "fire_time": fire_time.astimezone(UTC).isoformat()}

    def __getattr__(self, name: str) -> object:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class FireTimeExecutor(BasePoolExecutor):
    """A thread pool that tells the job function which scheduled time it is firing for.

    APScheduler 3 calls job functions without the scheduled time; the idempotency key needs it.
    With coalesce=True there is one run time per submission.
    """

    def __init__(self, max_workers: int = 4) -> None:
        super().__init__(concurrent.futures.ThreadPoolExecutor(max_workers))

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        super()._do_submit_job(_WithFireTime(job, run_times[-1]), run_times[-1:])

    # The result listeners (django-apscheduler's execution log) write from the pool thread
    # after the job returned: close that connection too.
    def _run_job_success(self, job_id: str, events: list) -> None:
        try:
            super()._run_job_success(job_id, events)
        finally:
            connection.close()

    def _run_job_error(self, job_id: str, exc: BaseException, traceback: object = None) -> None:
        try:
            super()._run_job_error(job_id, exc, traceback)
        finally:
            connection.close()


class _Scheduler(BackgroundScheduler):
    """Closes the scheduler thread's DB connection when it ends."""

    def _main_loop(self) -> None:
        try:
            super()._main_loop()
        finally:
            connection.close()


def _job_version(job: ScheduledJob) -> str:
    return job.updated_at.isoformat()


class ScheduleMirror:
    """Owns the leader's BackgroundScheduler and keeps its jobs equal to the enabled rows."""

    def __init__(self) -> None:
        self.scheduler: BackgroundScheduler | None = None

    @property
    def running(self) -> bool:
        return self.scheduler is not None

    def start(self) -> None:
        if self.scheduler is not None:
            return
        scheduler = _Scheduler(
            timezone=UTC,
            executors={"default": FireTimeExecutor()},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": settings.FASTFLOW_SCHEDULE_GRACE_SECONDS,
            },
        )
        scheduler.add_jobstore(DjangoJobStore(), "default")
        scheduler.add_listener(_on_missed, EVENT_JOB_MISSED)
        scheduler.start()
        self.scheduler = scheduler
        logger.info("scheduler started (this engine leads)")

    def stop(self) -> None:
        if self.scheduler is None:
            return
        scheduler, self.scheduler = self.scheduler, None
        try:
            scheduler.shutdown(wait=True)  # a job only enqueues: this takes milliseconds
        except Exception:  # noqa: BLE001 - stopping must not fail the engine
            logger.exception("stopping the scheduler failed")
        logger.info("scheduler stopped")

    def sync(self) -> int:
        """Add, replace or remove APScheduler jobs; returns how many changed."""
        if self.scheduler is None:
            return 0
        wanted = {str(job.id): job for job in ScheduledJob.objects.filter(enabled=True)}
        current = {job.id: job for job in self.scheduler.get_jobs()}
        changes = 0
        for job_id in current.keys() - wanted.keys():
            self.scheduler.remove_job(job_id)
            changes += 1
        for job_id, row in wanted.items():
            version = _job_version(row)
            existing = current.get(job_id)
            # Untouched rows keep their job (and so its next fire time, for catch-up).
            if existing is not None and existing.kwargs.get("version") == version:
                continue
            try:
                trigger = scheduledjob_trigger(job=row)
            except (ValueError, TypeError) as exc:
                logger.warning("schedule %s (%s) has an unusable trigger: %s", job_id, row, exc)
                continue
            self.scheduler.add_job(
                JOB_FUNCTION,
                trigger=trigger,
                id=job_id,
                name=str(row)[:200],
                args=[job_id],
                kwargs={"version": version},
                replace_existing=True,
            )
            changes += 1
        return changes
