"""Schedules declared in pipeline.json become `ScheduledJob` rows (source="pipeline_json").

Called after every pipelines sync. Rows created in the admin (source="admin") are never
touched. A file-defined row is identified by (pipeline, run_config_id, one-off or not), so
editing a cron in the file updates the row in place; its `updated_at` moves and the scheduler
leader replaces the APScheduler job within seconds.

`run_once_at` is stored as an INTERVAL row with start_date = end_date = run_once_at: the
interval trigger then fires exactly once, at that moment (docs/schema.md).

A daemon pipeline's `restart_interval` becomes a row with source="daemon_restart" (CRON or
INTERVAL): its ticks restart the pipeline (`run_daemon_restart`) instead of adding a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from pipelines_app.models import Pipeline
from runs_app.models import FILE_DEFINED_SOURCES, ScheduledJob, ScheduleSource, TriggerType

ONCE_INTERVAL_SECONDS = 86400  # any positive value: the window admits a single fire
SCHEDULE_KEY_PREFIX = "schedule:"


def schedule_idempotency_key(*, job_id: object, fire_time: str) -> str:
    """The idempotency key of the run a schedule tick enqueues: one run per job and tick."""
    return f"{SCHEDULE_KEY_PREFIX}{job_id}:{fire_time}"


def schedule_fire_time(idempotency_key: str) -> datetime | None:
    """The tick a scheduled run was enqueued for, read back from its idempotency key."""
    if not idempotency_key.startswith(SCHEDULE_KEY_PREFIX):
        return None
    # "schedule:<uuid>:<ISO time>"; the time itself contains colons.
    _, _, rest = idempotency_key.partition(":")
    _, _, tick = rest.partition(":")
    try:
        moment = datetime.fromisoformat(tick)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# What a file-defined row is, beside its pipeline and run configuration.
SCHEDULE, ONCE, RESTART = "schedule", "once", "restart"


@dataclass(frozen=True)
class _Wanted:
    run_config_id: str
    kind: str  # SCHEDULE, ONCE or RESTART
    trigger_type: str
    trigger_value: str
    start_date: datetime | None
    end_date: datetime | None
    enabled: bool


@dataclass
class ScheduleSyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def _trigger(cron: str | None, interval: int | None) -> tuple[str, str] | None:
    # Cron wins when both are given (as in the original).
    if cron:
        return TriggerType.CRON, " ".join(cron.split())
    if interval:
        return TriggerType.INTERVAL, str(int(interval))
    return None


def _wanted(pipeline: Pipeline) -> list[_Wanted]:
    spec = pipeline.spec
    rows: list[_Wanted] = []
    top = _trigger(spec.schedule_cron, spec.schedule_interval_seconds)
    if top:
        rows.append(
            _Wanted("", SCHEDULE, *top, spec.schedule_start, spec.schedule_end, pipeline.enabled)
        )
    if spec.restart_interval:
        # Whole seconds or a cron expression (pipelines_app.spec_values.as_restart_interval).
        every = spec.restart_interval
        restart = _trigger(None, int(every)) if every.isdigit() else _trigger(every, None)
        rows.append(_Wanted("", RESTART, *restart, None, None, pipeline.enabled))
    if spec.run_once_at:
        rows.append(
            _Wanted(
                "",
                ONCE,
                TriggerType.INTERVAL,
                str(ONCE_INTERVAL_SECONDS),
                spec.run_once_at,
                spec.run_once_at,
                pipeline.enabled,
            )
        )
    for config in spec.schedules:
        trigger = _trigger(config.schedule_cron, config.schedule_interval_seconds)
        if trigger:
            rows.append(
                _Wanted(
                    config.id,
                    SCHEDULE,
                    *trigger,
                    config.schedule_start,
                    config.schedule_end,
                    pipeline.enabled and config.enabled,
                )
            )
    return rows


def _kind(job: ScheduledJob) -> str:
    if job.source == ScheduleSource.DAEMON_RESTART:
        return RESTART
    if (
        job.trigger_type == TriggerType.INTERVAL
        and job.start_date is not None
        and job.start_date == job.end_date
    ):
        return ONCE
    return SCHEDULE


def schedules_sync_from_pipelines() -> ScheduleSyncReport:
    """Create, update and delete file-defined schedule rows to match every pipeline's spec.

    A pipeline whose pipeline.json is currently broken keeps its rows (a typo must not wipe
    schedules; its runs are refused anyway); a pipeline gone from the folder loses them.
    """
    report = ScheduleSyncReport()
    with transaction.atomic():
        existing: dict[tuple[str, str, str], ScheduledJob] = {}
        duplicates: list[ScheduledJob] = []
        for job in ScheduledJob.objects.filter(source__in=FILE_DEFINED_SOURCES):
            slot = (job.pipeline_id, job.run_config_id, _kind(job))
            if slot in existing:
                duplicates.append(job)
            else:
                existing[slot] = job

        keep: set[tuple[str, str, str]] = set()
        for pipeline in Pipeline.objects.all():
            if pipeline.discovery_error and not pipeline.is_missing:
                keep |= {slot for slot in existing if slot[0] == pipeline.pipeline_name}
                continue
            if pipeline.is_missing:
                continue
            for want in _wanted(pipeline):
                slot = (pipeline.pipeline_name, want.run_config_id, want.kind)
                keep.add(slot)
                _apply(pipeline, slot, want, existing.get(slot), report)

        for slot, job in existing.items():
            if slot not in keep:
                duplicates.append(job)
        for job in duplicates:
            report.deleted.append(str(job))
            job.delete()
    return report


def _apply(
    pipeline: Pipeline,
    slot: tuple[str, str, str],
    want: _Wanted,
    job: ScheduledJob | None,
    report: ScheduleSyncReport,
) -> None:
    values = {
        "trigger_type": want.trigger_type,
        "trigger_value": want.trigger_value,
        "start_date": want.start_date,
        "end_date": want.end_date,
        "enabled": want.enabled,
    }
    if job is None:
        job = ScheduledJob.objects.create(
            pipeline=pipeline,
            source=ScheduleSource.DAEMON_RESTART
            if want.kind == RESTART
            else ScheduleSource.PIPELINE_JSON,
            run_config_id=want.run_config_id,
            **values,
        )
        report.created.append(str(job))
        return
    changed = [name for name, value in values.items() if getattr(job, name) != value]
    if changed:
        for name in changed:
            setattr(job, name, values[name])
        job.save(update_fields=[*changed, "updated_at"])
        report.updated.append(str(job))
