"""Cache warm-up: resolve a pipeline's requirements and build the environment its runs use.

With the runs' own image (Docker) or uv and interpreter (local), through the executor's shared
uv cache, into a prepared environment that the next runs execute read-only (`uvcache.py`): a
warm run installs nothing. How is each executor's business
(`Executor.warm`); this module decides when: `warm_cache` for one pipeline, `CacheWarmer` to
warm the pipelines the leader asks for, one at a time, off the dispatch path.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from fastflow_site.logformat import log_context
from pipelines_app.models import Pipeline
from runs_app.engine.base import Executor, InfrastructureError
from runs_app.engine.executors import get_executor
from runs_app.notify import notify_warmup_failed

logger = logging.getLogger(__name__)

WARMUP_TIMEOUT = 600.0


@dataclass(frozen=True)
class WarmupResult:
    ok: bool
    duration: float
    message: str


def warm_cache(
    *,
    pipeline_name: str,
    pipeline_dir: Path,
    python_version: str,
    executor: Executor | None = None,
    timeout: float = WARMUP_TIMEOUT,
    extra_requirements: tuple[str, ...] = (),
) -> WarmupResult:
    """Resolve and install `requirements.txt` and the engine's extra packages (a notebook's
    runner) into the executor's uv cache; never raises."""
    started = time.monotonic()
    pipeline_dir = Path(pipeline_dir)
    if not (pipeline_dir / "requirements.txt").is_file() and not extra_requirements:
        return WarmupResult(True, 0.0, "no requirements.txt: nothing to warm up")
    executor = executor or get_executor()
    try:
        message = executor.warm(
            pipeline_name=pipeline_name,
            pipeline_dir=pipeline_dir,
            python_version=python_version,
            timeout=timeout,
            extra_requirements=extra_requirements,
        )
    except InfrastructureError as exc:
        return WarmupResult(False, time.monotonic() - started, str(exc))
    duration = time.monotonic() - started
    if message:
        return WarmupResult(False, duration, message)
    return WarmupResult(
        True, duration, f"requirements installed into the cache in {duration:.1f} s"
    )


class CacheWarmer(threading.Thread):
    """Warms the uv cache for pipelines one at a time, off the dispatch path."""

    def __init__(self, executor: Executor) -> None:
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
                with log_context(pipeline=name):
                    self.warm(name)
            except Exception:  # noqa: BLE001
                logger.exception("cache warm-up of %s failed", name)
            finally:
                close_old_connections()
        connection.close()

    def warm(self, name: str) -> None:
        pipeline = Pipeline.objects.filter(pipeline_name=name).first()
        # requirements_hash covers requirements.txt and the packages the engine adds.
        if pipeline is None or pipeline.is_missing or not pipeline.requirements_hash:
            return
        python_version = pipeline.spec.python_version or settings.FASTFLOW_DEFAULT_PYTHON_VERSION
        logger.info("warming the uv cache for %s (python %s)", name, python_version)
        result = warm_cache(
            pipeline_name=name,
            pipeline_dir=pipeline.folder,
            python_version=python_version,
            executor=self.executor,
            extra_requirements=pipeline.spec.extra_requirements,
        )
        if result.ok:
            Pipeline.objects.filter(pipeline_name=name).update(
                last_cache_warmup=timezone.now(), cache_warmup_error=""
            )
            logger.info("uv cache warm for %s in %.1f s", name, result.duration)
        else:
            with transaction.atomic():
                Pipeline.objects.filter(pipeline_name=name).update(
                    cache_warmup_error=result.message[:10000]
                )
                notify_warmup_failed(pipeline=pipeline, message=result.message)
            logger.warning("cache warm-up of %s failed: %s", name, result.message)
