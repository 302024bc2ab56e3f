"""Creating, editing and deleting `ScheduledJob` rows (admin and API share these).

Rows with source="pipeline_json" belong to discovery, which rewrites them from the file on every
sync, so they cannot be edited or deleted here: an edit would silently come back.
"""

from __future__ import annotations

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
from runs_app.models import ScheduledJob, ScheduleSource, TriggerType

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
        known = [rc.id for rc in pipeline.spec.schedules] if pipeline else []
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
