"""Schedules (`ScheduledJob` rows): every way one is made, changed or removed.

- From pipeline.json (`schedules_sync_from_pipelines`, after every pipelines sync): rows with
  source="pipeline_json". A file-defined row is identified by (pipeline, run_config_id, one-off or
  not), so editing a cron in the file updates the row in place; its `updated_at` moves and the
  scheduler leader replaces the APScheduler job within seconds. `run_once_at` is stored as an
  INTERVAL row with start_date = end_date = run_once_at: the interval trigger then fires exactly
  once, at that moment (docs/schema.md). A daemon pipeline's `restart_interval` becomes a row
  with source="daemon_restart" (CRON or INTERVAL): its ticks restart the pipeline
  (`run_daemon_restart`) instead of adding a run.
- From the admin and the API (`scheduledjob_create` / `_update` / `_delete`): rows with
  source="admin". File-defined rows cannot be edited or deleted there: discovery rewrites them
  from the file on every sync, so an edit would silently come back.
- Their triggers and next fire times (`scheduledjob_trigger`, `scheduledjob_next_fire_times`),
  and the idempotency key of the run each tick enqueues (`schedule_idempotency_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.core.exceptions import ValidationError
from django.db import transaction

from audit_app.context import AuditContext
from audit_app.services import audit_changes, audit_record
from pipelines_app.models import Pipeline
from pipelines_app.spec import SpecError, cron_trigger, next_fire_times, validate_cron
from runs_app.errors import ScheduleReadOnly
from runs_app.models import FILE_DEFINED_SOURCES, ScheduledJob, ScheduleSource, TriggerType

EDITABLE_FIELDS = (
    "pipeline",
    "trigger_type",
    "trigger_value",
    "enabled",
    "run_config_id",
    "start_date",
    "end_date",
)


def trigger_value_clean(*, trigger_type: str, trigger_value: str) -> str:
    """The normalised trigger value; raises ValidationError naming what is wrong."""
    value = " ".join(str(trigger_value or "").split())
    if not value:
        raise ValidationError({"trigger_value": "A trigger value is required."})
    if trigger_type == TriggerType.CRON:
        try:
            validate_cron(value)
        except (SpecError, ValueError) as exc:
            raise ValidationError(
                {"trigger_value": f"Invalid cron expression {value!r}: {exc}"}
            ) from exc
        return value
    if trigger_type == TriggerType.INTERVAL:
        try:
            seconds = int(value)
        except ValueError:
            raise ValidationError(
                {"trigger_value": f"Interval must be a whole number of seconds, got {value!r}."}
            ) from None
        if seconds <= 0:
            raise ValidationError(
                {"trigger_value": f"Interval must be a positive number of seconds, got {seconds}."}
            )
        return str(seconds)
    raise ValidationError(
        {"trigger_type": f"Unknown trigger type {trigger_type!r} (expected CRON or INTERVAL)."}
    )


def scheduledjob_clean(*, job: ScheduledJob) -> None:
    """Validate and normalise a row's trigger, window and run configuration in place."""
    errors: dict[str, str] = {}
    try:
        job.trigger_value = trigger_value_clean(
            trigger_type=job.trigger_type, trigger_value=job.trigger_value
        )
    except ValidationError as exc:
        errors.update({k: v[0] for k, v in exc.message_dict.items()})
    if job.start_date and job.end_date and job.start_date >= job.end_date:
        errors["end_date"] = "The end date must be after the start date."
    job.run_config_id = (job.run_config_id or "").strip()
    if job.run_config_id and job.pipeline_id:
        pipeline = Pipeline.objects.filter(pk=job.pipeline_id).first()
        known = [rc.id for rc in pipeline.spec.run_configs] if pipeline else []
        if job.run_config_id not in known:
            errors["run_config_id"] = (
                f"Pipeline '{job.pipeline_id}' has no run configuration {job.run_config_id!r}"
                + (f" (known: {', '.join(known)})." if known else " (it defines none).")
            )
    if errors:
        raise ValidationError(errors)


def _refuse_file_defined(job: ScheduledJob, verb: str) -> None:
    if job.is_file_defined:
        raise ScheduleReadOnly(
            f"This schedule is defined in {job.pipeline_id}/pipeline.json and cannot be {verb} "
            "here: edit the file (the next pipeline sync applies it)."
        )


def scheduledjob_create(
    *,
    pipeline: Pipeline,
    trigger_type: str,
    trigger_value: str,
    enabled: bool = True,
    run_config_id: str = "",
    start_date: datetime | None = None,
    end_date: datetime | None = None,
    audit: AuditContext | None = None,
) -> ScheduledJob:
    job = ScheduledJob(
        pipeline=pipeline,
        trigger_type=trigger_type,
        trigger_value=trigger_value,
        enabled=enabled,
        run_config_id=run_config_id,
        start_date=start_date,
        end_date=end_date,
        source=ScheduleSource.ADMIN,
    )
    scheduledjob_clean(job=job)
    with transaction.atomic():
        job.save()
        audit_record(
            audit=audit,
            action="schedule.create",
            target=job,
            changes=audit_changes(before={}, after=_audited(job)),
        )
    return job


def _audited(job: ScheduledJob) -> dict[str, object]:
    return {name: getattr(job, name) for name in ("pipeline_id", *EDITABLE_FIELDS)}


def scheduledjob_update(
    *, job: ScheduledJob, audit: AuditContext | None = None, **changes: object
) -> ScheduledJob:
    """Apply `changes` (any of EDITABLE_FIELDS) to an admin-created schedule."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"Cannot change field(s): {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        current = ScheduledJob.objects.select_for_update().get(pk=job.pk)
        _refuse_file_defined(current, "changed")
        before = _audited(current)
        for name, value in changes.items():
            setattr(job, name, value)
        scheduledjob_clean(job=job)
        # updated_at moves with every save: the scheduler's mirror picks the edit up from it.
        job.save(update_fields=[*changes, "trigger_value", "run_config_id", "updated_at"])
        diff = audit_changes(before=before, after=_audited(job))
        if diff:
            audit_record(audit=audit, action="schedule.update", target=job, changes=diff)
    return job


def scheduledjob_delete(*, job: ScheduledJob, audit: AuditContext | None = None) -> None:
    _refuse_file_defined(job, "deleted")
    with transaction.atomic():
        deleted, _ = ScheduledJob.objects.filter(pk=job.pk, source=ScheduleSource.ADMIN).delete()
        if deleted:
            audit_record(audit=audit, action="schedule.delete", target=job)


def scheduledjob_trigger(*, job: ScheduledJob) -> BaseTrigger:
    """The APScheduler trigger for a row (UTC; standard cron day-of-week numbering)."""
    if job.trigger_type == TriggerType.CRON:
        return cron_trigger(job.trigger_value, start=job.start_date, end=job.end_date)
    return IntervalTrigger(
        seconds=int(job.trigger_value),
        start_date=job.start_date,
        end_date=job.end_date,
        timezone=UTC,
    )


def scheduledjob_next_fire_times(
    *, job: ScheduledJob, count: int = 5, now: datetime | None = None
) -> list[datetime]:
    """Upcoming fire times; empty when the stored trigger is unusable or the window is over."""
    try:
        trigger = scheduledjob_trigger(job=job)
    except (SpecError, ValueError, TypeError):
        return []
    return next_fire_times(trigger, count=count, now=now)


# --- Ticks: the run a tick enqueues ----------------------------------------------------------

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


# --- From pipeline.json ---------------------------------------------------------------------

ONCE_INTERVAL_SECONDS = 86400  # any positive value: the window admits a single fire

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
    for config in spec.run_configs:
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
