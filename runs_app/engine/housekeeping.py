"""Engine bookkeeping: identity and heartbeat, background periodic jobs, and the leader's
chores (re-sync pipelines → schedules → cache warm-up, purge expired tokens, old job logs)."""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from pipelines_app.errors import PipelinesDirError
from pipelines_app.models import Pipeline
from runs_app.models import EngineInstance

logger = logging.getLogger(__name__)

JOB_EXECUTION_MAX_AGE = timedelta(days=7)
PURGE_EVERY_SECONDS = 3600.0
# A failed warm-up (index unreachable, missing CA bundle, ...) is tried again when the leader
# starts and then at this pace, so a fixed network or configuration is picked up without
# having to touch requirements.txt.
WARMUP_RETRY_SECONDS = 600.0


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
    cutoff = timezone.now() - timedelta(seconds=settings.FASTFLOW_HEARTBEAT_STALE_SECONDS)
    live = {me}
    for engine in EngineInstance.objects.filter(heartbeat_at__gte=cutoff):
        if engine.id != me and _pid_visible_here(engine) and _process_gone(engine.pid):
            continue
        live.add(engine.id)
    return live


def engines_sweep(*, live: set[str]) -> int:
    """Delete rows of engines that are no longer alive (after their runs were reconciled)."""
    deleted, _ = EngineInstance.objects.exclude(id__in=live).delete()
    return deleted


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


class CacheWarmer(threading.Thread):
    """Warms the uv cache for pipelines one at a time, off the dispatch path."""

    def __init__(self, executor: object) -> None:
        super().__init__(name="cache-warmup", daemon=True)
        self.executor = executor
        self.pending: queue.Queue[str | None] = queue.Queue()
        self.queued: set[str] = set()
        self._lock = threading.Lock()

    def request(self, names: list[str]) -> None:
        with self._lock:
            for name in names:
                if name not in self.queued:
                    self.queued.add(name)
                    self.pending.put(name)

    def stop(self) -> None:
        self.pending.put(None)

    def run(self) -> None:
        while (name := self.pending.get()) is not None:
            with self._lock:
                self.queued.discard(name)
            try:
                self.warm(name)
            except Exception:  # noqa: BLE001
                logger.exception("cache warm-up of %s failed", name)
            finally:
                close_old_connections()
        connection.close()

    def warm(self, name: str) -> None:
        from runs_app.engine.dispatcher import pipeline_dir
        from runs_app.engine.warmup import warm_cache

        pipeline = Pipeline.objects.filter(pipeline_name=name).first()
        if pipeline is None or pipeline.is_missing or not pipeline.has_requirements:
            return
        python_version = pipeline.spec.python_version or settings.FASTFLOW_DEFAULT_PYTHON_VERSION
        logger.info("warming the uv cache for %s (python %s)", name, python_version)
        result = warm_cache(
            pipeline_name=name,
            pipeline_dir=pipeline_dir(name),
            python_version=python_version,
            executor=self.executor,
        )
        if result.ok:
            Pipeline.objects.filter(pipeline_name=name).update(
                last_cache_warmup=timezone.now(), cache_warmup_error=""
            )
            logger.info("uv cache warm for %s in %.1f s", name, result.duration)
        else:
            Pipeline.objects.filter(pipeline_name=name).update(
                cache_warmup_error=result.message[:10000]
            )
            logger.warning("cache warm-up of %s failed: %s", name, result.message)


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
        from pipelines_app.services import pipelines_sync
        from runs_app.schedules import schedules_sync_from_pipelines

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
                    *getattr(report, "requirements_changed", []),
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
        from django_apscheduler.models import DjangoJobExecution

        from accounts_app import services as account_services

        if hasattr(account_services, "tokens_purge_expired"):
            purged = account_services.tokens_purge_expired()
            if purged:
                logger.info("purged %s expired API token(s)", purged)
        DjangoJobExecution.objects.delete_old_job_executions(
            int(JOB_EXECUTION_MAX_AGE.total_seconds())
        )
