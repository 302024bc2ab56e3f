"""Where notification events come from, for runs: the run services (a final failure, a
recovery, a success, a memory soft limit at the end), the scheduler (late or missed ticks),
reconcile (an engine gone silent) and the cache warmer. The engine's watch over RUNNING runs is
in `engine/notify.py`.

Every function here only decides *whether* something happened and names it with a key that
is the same on every engine and every replay; `notification_event_emit` does the rest (inside
the caller's transaction).
"""

from __future__ import annotations

import logging
import statistics
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from notifications_app.models import NotificationEvent
from notifications_app.services import notification_event_emit
from pipelines_app.models import Pipeline
from pipelines_app.spec import EffectiveConfig
from runs_app.models import PipelineRun, RunStatus

logger = logging.getLogger(__name__)

MEDIAN_SAMPLE = 20
MEDIAN_MIN_SAMPLES = 5
OUTCOME_KINDS = ("run_failed", "retries_exhausted", "run_recovered")


def effective_config(run: PipelineRun) -> EffectiveConfig | None:
    try:
        return run.pipeline.spec.effective(run.run_config_id or None)
    except (KeyError, ValueError):
        return None


def notify_run_finished(*, run: PipelineRun, retry_queued: bool) -> None:
    """Inside the finishing transaction: a final failure, a recovery, a success (if asked),
    and a memory soft limit the run's peak went over."""
    common = {
        "pipeline_name": run.pipeline_id,
        "pipeline": run.pipeline,
        "run_id": run.id,
        "run_config_id": run.run_config_id,
    }
    if run.status == RunStatus.FAILED and not retry_queued:
        kind = "retries_exhausted" if run.retry_attempt > 0 else "run_failed"
        summary = (
            f"The run failed after {run.retry_attempt} "
            f"{'retry' if run.retry_attempt == 1 else 'retries'}."
            if run.retry_attempt
            else "The run failed."
        )
        notification_event_emit(kind=kind, key=f"run:{run.id}:failed", summary=summary, **common)
    elif run.status == RunStatus.SUCCESS:
        last = (
            NotificationEvent.objects.filter(pipeline_name=run.pipeline_id, kind__in=OUTCOME_KINDS)
            .order_by("-created_at", "-id")
            .values_list("kind", flat=True)
            .first()
        )
        if last in ("run_failed", "retries_exhausted"):
            notification_event_emit(
                kind="run_recovered",
                key=f"run:{run.id}:recovered",
                summary="The pipeline succeeded again after a failure.",
                with_log=False,
                **common,
            )
        notification_event_emit(
            kind="run_succeeded", key=f"run:{run.id}:succeeded", with_log=False, **common
        )
    effective = effective_config(run)
    limit = effective.mem_soft_limit if effective else None
    if limit and run.peak_memory_bytes and run.peak_memory_bytes > limit:
        notify_memory_soft_limit(run=run, used=run.peak_memory_bytes, limit=limit)


def notify_memory_soft_limit(
    *, run: PipelineRun, used: int, limit: int
) -> NotificationEvent | None:
    mib = 1024 * 1024
    return notification_event_emit(
        kind="memory_soft_limit",
        key=f"run:{run.id}:memory_soft_limit",
        pipeline_name=run.pipeline_id,
        run_id=run.id,
        run_config_id=run.run_config_id,
        summary=f"The run used {used / mib:.1f} MiB of memory, over its soft limit of "
        f"{limit / mib:.1f} MiB.",
    )


def notify_schedule_late(
    *, job_id: object, pipeline_name: str, run_config_id: str, tick: str, late: float,
    missed: bool,
) -> None:  # fmt: skip
    what = (
        f"The tick of {tick} was missed: {late:.0f} s late, beyond the grace of "
        f"{settings.FASTFLOW_SCHEDULE_GRACE_SECONDS} s (FASTFLOW_SCHEDULE_GRACE_SECONDS), "
        "so no run started."
        if missed
        else f"The tick of {tick} fired {late:.0f} s late."
    )
    notification_event_emit(
        kind="schedule_late",
        key=f"schedule:{job_id}:{tick}:late",
        pipeline_name=pipeline_name,
        run_config_id=run_config_id,
        summary=what,
        facts={"Schedule": str(job_id)},
    )


def notify_engine_silent(*, engine_id: str, hostname: str, heartbeat_at: datetime) -> None:
    age = (timezone.now() - heartbeat_at).total_seconds()
    notification_event_emit(
        kind="engine_silent",
        key=f"engine:{engine_id}:silent",
        summary=f"The engine {engine_id} on {hostname} stopped heartbeating {age:.0f} s ago; "
        "its runs were handed to the other engines or failed.",
        facts={"Last heartbeat": heartbeat_at.isoformat(timespec="seconds")},
    )


def notify_warmup_failed(*, pipeline: Pipeline, message: str) -> None:
    since = pipeline.last_cache_warmup.isoformat() if pipeline.last_cache_warmup else "never"
    notification_event_emit(
        kind="cache_warmup_failed",
        # Once per requirements.txt version and last success: the retries every 10 min of
        # the same failure say nothing new.
        key=f"warmup:{pipeline.pipeline_name}:{pipeline.requirements_hash}:{since}",
        pipeline_name=pipeline.pipeline_name,
        summary="Resolving the pipeline's requirements.txt failed; its runs install "
        "without a warm cache or fail the same way.",
        facts={"Error": message[-2000:]},
    )


def expected_seconds(*, run: PipelineRun) -> float | None:
    """How long the run may take before it counts as long-running, or None (no expectation)."""
    config = run.pipeline.spec.notifications_for(run.run_config_id or None)
    if config.expected_duration:
        return float(config.expected_duration)
    factor = config.long_running_factor or settings.FASTFLOW_NOTIFY_LONG_RUNNING_FACTOR
    if not factor:
        return None
    recent = list(
        PipelineRun.objects.filter(
            pipeline_id=run.pipeline_id,
            status=RunStatus.SUCCESS,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .order_by("-queued_at")
        .values_list("started_at", "finished_at")[:MEDIAN_SAMPLE]
    )
    if len(recent) < MEDIAN_MIN_SAMPLES:
        return None
    median = statistics.median((end - start).total_seconds() for start, end in recent)
    return max(median * factor, settings.FASTFLOW_NOTIFY_LONG_RUNNING_MIN_SECONDS)


def notify_daemon_crash_loop(
    *, crashed: PipelineRun, restart: PipelineRun, restart_count: int, delay: float
) -> None:
    """Inside the finishing transaction of a crashed daemon run whose restart backs off; once
    per restart (its key), however many engines replay the finish."""
    notification_event_emit(
        kind="daemon_crash_loop",
        key=f"daemon:{restart.id}:crash_loop",
        pipeline_name=crashed.pipeline_id,
        run_id=crashed.id,
        run_config_id=crashed.run_config_id,
        summary=f"The daemon crashed {restart_count} times in a row, each within "
        f"{settings.FASTFLOW_DAEMON_STABLE_SECONDS:g} s of its start; the next restart (run "
        f"{restart.id}) waits {delay:g} s.",
        facts={"Restart run": str(restart.id)},
    )
