"""The run lifecycle. Every trigger (admin, API, webhook, schedule, retry, downstream) and the
engine go through these functions; nothing else creates runs or changes their status.

Every status change is a conditional UPDATE on the expected status, so a terminal status is
never overwritten and two engines never both act on one run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, Value, When
from django.utils import timezone

from audit_app.context import AuditContext
from audit_app.services import audit_record
from fastflow_site.db import serialise
from pipelines_app.env_names import reserved_env_message
from pipelines_app.errors import SpecError
from pipelines_app.models import Pipeline
from pipelines_app.spec import DownstreamTrigger, PipelineSpec
from pipelines_app.spec_values import as_route_label
from runs_app.daemon import daemon_crash_loop_detected, restart_note, restart_plan
from runs_app.errors import (
    InvalidRunRequest,
    PipelineNotFound,
    PipelineNotRunnable,
    RunError,
    RunStateConflict,
)
from runs_app.logs import run_artifacts_remove
from runs_app.models import TERMINAL_STATUSES, PipelineRun, RunStatus, ScheduledJob, TriggeredBy
from runs_app.notify import notify_run_finished
from runs_app.outcome import Outcome, outcome_message
from runs_app.period_stats import run_period_stats_record
from runs_app.run_output import log_append_notes, output_names, output_remove
from runs_app.stats import run_stats_record
from runs_app.wakeup import WAKE_CANCEL, WAKE_RUN, engines_wake

logger = logging.getLogger(__name__)

PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDEMPOTENCY_WINDOW = timedelta(hours=24)
KEY_MAX_LENGTH = 255


def _short_key(key: str) -> str:
    if len(key) <= KEY_MAX_LENGTH:
        return key
    return key[:180] + ":" + hashlib.sha256(key.encode()).hexdigest()


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _parameter_problem(name: object, value: object, *, max_bytes: int) -> str | None:
    """What is wrong with one parameter as an environment variable, or None."""
    if not isinstance(name, str) or not PARAMETER_NAME.match(name):
        return (
            f"invalid parameter name {name!r}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    if refused := reserved_env_message(name, what="parameter"):
        return refused
    if not isinstance(value, str):
        return (
            f"parameter {name!r} must be a string, got {type(value).__name__} "
            "(environment variables are text)"
        )
    if "\x00" in value:
        return (
            f"parameter {name!r} contains a NUL character, which an environment variable "
            "cannot hold"
        )
    if not _encodable(value):
        return f"parameter {name!r} is not valid Unicode text (lone surrogate)"
    if len(value.encode()) > max_bytes:
        return f"parameter {name!r} is longer than {max_bytes} bytes"
    return None


def run_parameters_validate(*, parameters: object) -> dict[str, str]:
    """Parameters arrive as environment variables, so names and sizes are checked strictly."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        message = "parameters must be an object mapping names to string values"
        raise InvalidRunRequest(message, fields={"parameters": message})
    limit = settings.FASTFLOW_PARAMETERS_MAX_COUNT
    if len(parameters) > limit:
        message = f"too many parameters: {len(parameters)} given, at most {limit} allowed"
        raise InvalidRunRequest(message, fields={"parameters": message})
    max_bytes = settings.FASTFLOW_PARAMETER_VALUE_MAX_BYTES
    errors = {
        f"parameters.{name}": problem
        for name, value in parameters.items()
        if (problem := _parameter_problem(name, value, max_bytes=max_bytes)) is not None
    }
    if errors:
        raise InvalidRunRequest("invalid parameters: " + "; ".join(errors.values()), errors)
    return dict(parameters)


def run_parameters_check_conflicts(
    *, spec: PipelineSpec, run_config_id: str | None, parameters: dict[str, str]
) -> None:
    """A parameter never replaces a value the pipeline keeps secret: a name listed in
    `secrets` or in the (selected run configuration's) `encrypted_env` is refused, not
    silently overridden. Raises InvalidRunRequest naming each such key; KeyError for an
    unknown run configuration."""
    effective = spec.effective(run_config_id or None)
    guarded = {name: "a secret" for name in spec.secrets}
    guarded |= {name: "an encrypted_env value" for name in effective.encrypted_env}
    errors = {
        f"parameters.{name}": (
            f"parameter {name!r} would replace {guarded[name]} of pipeline.json with the "
            "same name; a parameter cannot override it (use another name)"
        )
        for name in parameters
        if name in guarded
    }
    if errors:
        raise InvalidRunRequest("invalid parameters: " + "; ".join(errors.values()), errors)


def _spec_or_none(pipeline: Pipeline) -> PipelineSpec | None:
    """The pipeline's parsed configuration, or None when the stored copy is unreadable (only
    a hand-edited row can be: discovery stores `{}` for a broken file)."""
    try:
        return pipeline.spec
    except ValueError as exc:
        logger.error("pipeline %s: stored configuration unreadable: %s", pipeline, exc)
        return None


def _pipeline_for_run(pipeline: Pipeline | str) -> Pipeline:
    # Re-read even when given an instance: "is it enabled?" must be answered by the DB now.
    name = pipeline.pipeline_name if isinstance(pipeline, Pipeline) else str(pipeline)
    found = Pipeline.objects.filter(pipeline_name=name).first()
    if found is None:
        raise PipelineNotFound(f"pipeline '{name}' does not exist")
    if not found.is_runnable:
        raise PipelineNotRunnable(found.not_runnable_reason)
    if _spec_or_none(found) is None:
        raise PipelineNotRunnable(
            f"pipeline '{name}' has an unreadable stored configuration; re-sync the pipelines"
        )
    return found


def _trigger_action(triggered_by: str, parent_run: PipelineRun | None) -> str:
    retried = parent_run is not None and triggered_by in ("manual", "retry")
    return "run.retry" if retried else "run.trigger"


def run_enqueue(
    *,
    pipeline: Pipeline | str,
    triggered_by: str,
    parameters: dict[str, str] | None = None,
    run_config_id: str | None = None,
    parent_run: PipelineRun | None = None,
    scheduled_job: ScheduledJob | None = None,
    idempotency_key: str = "",
    not_before: datetime | None = None,
    chain_depth: int = 0,
    retry_attempt: int = 0,
    audit: AuditContext | None = None,
    restart_count: int = 0,
) -> PipelineRun:
    """Create a PENDING run. With `idempotency_key`, a run of this pipeline created with the
    same key in the last 24 h is returned instead of a new one."""
    if triggered_by not in TriggeredBy.values:
        expected = ", ".join(TriggeredBy.values)
        message = f"unknown trigger {triggered_by!r} (expected one of {expected})"
        raise InvalidRunRequest(message, fields={"triggered_by": message})
    target = _pipeline_for_run(pipeline)
    params = run_parameters_validate(parameters=parameters)
    config_id = (run_config_id or "").strip()
    if config_id and target.spec.run_config(config_id) is None:
        known = ", ".join(rc.id for rc in target.spec.run_configs) or "none defined"
        message = (
            f"pipeline '{target.pipeline_name}' has no run configuration {config_id!r} "
            f"(known: {known})"
        )
        raise InvalidRunRequest(message, fields={"run_config_id": message})
    run_parameters_check_conflicts(spec=target.spec, run_config_id=config_id, parameters=params)
    key = _short_key(idempotency_key)
    with transaction.atomic():
        if key:
            existing = _keyed_run(target, key)
            if existing is not None:
                return existing
        run = PipelineRun.objects.create(
            pipeline=target,
            triggered_by=triggered_by,
            parameters=params,
            run_config_id=config_id,
            parent_run=parent_run,
            scheduled_job=scheduled_job,
            idempotency_key=key,
            not_before=not_before,
            chain_depth=chain_depth,
            retry_attempt=retry_attempt,
            restart_count=restart_count,
        )
        audit_record(
            audit=audit,
            action="run.retry"
            if triggered_by == "retry" or parent_run and triggered_by == "manual"
            else "run.trigger",
            target=run,
            details={
                "pipeline": target.pipeline_name,
                "triggered_by": triggered_by,
                "run_config_id": config_id,
                # Names only: parameter values are user input and may be confidential.
                "parameters": sorted(params),
                **({"parent_run": str(parent_run.id)} if parent_run else {}),
            },
        )
        if not_before is None or not_before <= timezone.now():
            engines_wake(reason=WAKE_RUN)  # after the commit; a later one is polled for
        return run


def _keyed_run(pipeline: Pipeline, key: str) -> PipelineRun | None:
    """Inside an atomic block: the run created with `key` in the idempotency window; takes the
    key's lock first, so a concurrent caller with the same key waits and then finds it."""
    serialise(f"run-idempotency:{pipeline.pipeline_name}:{key}")
    return (
        PipelineRun.objects.filter(
            pipeline=pipeline,
            idempotency_key=key,
            queued_at__gte=timezone.now() - IDEMPOTENCY_WINDOW,
        )
        .exclude(idempotency_key="")  # the partial index's condition, for the planner
        .order_by("queued_at")
        .first()
    )


def run_daemon_restart(
    *, pipeline: Pipeline | str, idempotency_key: str, scheduled_job: ScheduledJob | None = None
) -> PipelineRun:
    """A `restart_interval` tick: stop the pipeline's running runs and queue a new one
    (`daemon_restart`), which starts after `restart_cooldown` and once they have ended (the
    claim never starts a daemon restart beside a running run of its pipeline). Pending daemon
    restarts are superseded by it. A tick fired twice returns the first tick's run and stops
    nothing again."""
    target = _pipeline_for_run(pipeline)
    key = _short_key(idempotency_key)
    now = timezone.now()
    with transaction.atomic():
        existing = _keyed_run(target, key)
        if existing is not None:
            return existing
        runs = PipelineRun.objects.filter(pipeline=target)
        stopping = list(
            runs.filter(status=RunStatus.RUNNING, cancel_requested_at__isnull=True).values_list(
                "id", flat=True
            )
        )
        runs.filter(id__in=stopping, status=RunStatus.RUNNING).update(cancel_requested_at=now)
        runs.filter(status=RunStatus.PENDING, triggered_by=TriggeredBy.DAEMON_RESTART).update(
            status=RunStatus.CANCELLED,
            finished_at=now,
            cancel_requested_at=now,
            error_message="superseded by a restart_interval restart",
        )
        restart = run_enqueue(
            pipeline=target,
            triggered_by=TriggeredBy.DAEMON_RESTART,
            scheduled_job=scheduled_job,
            idempotency_key=key,
            not_before=now + timedelta(seconds=target.spec.restart_cooldown),
        )
    note = f"restart_interval: stopping this run; run {restart.id} replaces it"
    for run in PipelineRun.objects.filter(id__in=stopping):
        log_append_notes(run=run, notes=[note])
    return restart


def run_cancel(*, run: PipelineRun, audit: AuditContext | None = None) -> PipelineRun:
    """PENDING → CANCELLED at once; RUNNING → cancel requested (the owning engine stops it)."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = PipelineRun.objects.filter(id=run.id, status=RunStatus.PENDING).update(
            status=RunStatus.CANCELLED,
            finished_at=now,
            cancel_requested_at=now,
            error_message="cancelled before it started",
        )
        requested = 0
        if cancelled:
            run.refresh_from_db()
            run_stats_record(run=run)
            run_period_stats_record(run=run)
        else:
            requested = PipelineRun.objects.filter(
                id=run.id, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
            ).update(cancel_requested_at=now)
            if requested:
                engines_wake(reason=WAKE_CANCEL)  # the owning engine stops it now
        if cancelled or requested:
            audit_record(
                audit=audit,
                action="run.cancel",
                target=run,
                details={"was": RunStatus.PENDING if cancelled else RunStatus.RUNNING},
            )
    run.refresh_from_db()
    if run.status == RunStatus.RUNNING or (cancelled and run.status == RunStatus.CANCELLED):
        return run
    raise RunStateConflict(f"run {run.id} has already finished ({run.status})")


def run_retry(
    *, run: PipelineRun, triggered_by: str = TriggeredBy.MANUAL, audit: AuditContext | None = None
) -> PipelineRun:
    """A new PENDING run with the same parameters and run configuration."""
    run.refresh_from_db(fields=["status"])
    if not run.is_terminal:
        raise RunStateConflict(
            f"run {run.id} is {run.status}; only a finished run can be retried (cancel it first)"
        )
    return run_enqueue(
        pipeline=run.pipeline_id,
        triggered_by=triggered_by,
        parameters=run.parameters,
        run_config_id=run.run_config_id or None,
        parent_run=run,
        chain_depth=run.chain_depth,
        audit=audit,
    )


def run_delete(*, run: PipelineRun, audit: AuditContext | None = None) -> None:
    """Delete a finished run with its log and metrics files.

    Files go first: a row without files only shows "no log", files without a row are never
    found again. A file that cannot be removed is logged and the row is deleted anyway.
    """
    run.refresh_from_db(fields=["status", "log_file", "metrics_file", "output_archived_at"])
    if not run.is_terminal:
        raise RunStateConflict(
            f"run {run.id} is {run.status}; only a finished run can be deleted (cancel it first)"
        )
    for stored in (run.log_file, run.metrics_file):
        output_remove(stored)
    run_artifacts_remove(run=run)
    with transaction.atomic():
        deleted, _ = PipelineRun.objects.filter(id=run.id, status__in=TERMINAL_STATUSES).delete()
        if deleted:
            audit_record(audit=audit, action="run.delete", target=run)


# --- Engine side ---------------------------------------------------------------------------------


def run_claim_next(*, engine_id: str) -> PipelineRun | None:
    """Claim the oldest due PENDING run that fits the concurrency limits, or return None."""
    claimed = run_claim(engine_id=engine_id, limit=1)
    return claimed[0] if claimed else None


def run_claim(*, engine_id: str, limit: int) -> list[PipelineRun]:
    """Claim up to `limit` due PENDING runs, oldest first, within the concurrency limits (the
    global FASTFLOW_MAX_CONCURRENT_RUNS and each pipeline's max_instances), in one transaction.

    Counting RUNNING runs and claiming happen under one serialised transaction: otherwise two
    engines could both see 9 of 10 slots taken and both claim. Each run comes with its
    pipeline, read in that transaction: as current as a re-read when the run starts.
    """
    now = timezone.now()
    claimed: list[PipelineRun] = []
    with transaction.atomic():
        serialise("run-claim")
        # RUNNING runs per pipeline with the pipeline's configuration (for its max_instances):
        # their sum is the global count. One query for all three, inside the lock.
        running = (
            PipelineRun.objects.filter(status=RunStatus.RUNNING)
            .order_by()
            .values("pipeline", "pipeline__metadata")
            .annotate(n=Count("id"))
            .values_list("pipeline", "pipeline__metadata", "n")
        )
        per_pipeline: dict[str, int] = {}
        limits: dict[str, int | None] = {}
        for name, metadata, count in running:
            per_pipeline[name] = count
            spec = _spec_or_none(Pipeline(pipeline_name=name, metadata=metadata))
            if spec is not None:
                limits[name] = spec.max_instances
        free = min(limit, settings.FASTFLOW_MAX_CONCURRENT_RUNS - sum(per_pipeline.values()))
        if free <= 0:
            return claimed
        full = [
            name
            for name, count in per_pipeline.items()
            if limits.get(name) is not None and count >= limits[name]
        ]
        due = (
            PipelineRun.objects.due(now)
            .exclude(pipeline_id__in=full)
            # A daemon restart replaces a stopped instance: it never runs beside a live one.
            .exclude(triggered_by=TriggeredBy.DAEMON_RESTART, pipeline_id__in=list(per_pipeline))
            .select_related("pipeline")
            .order_by("queued_at", "id")
        )
        for candidate in due[: free + 4]:
            name = candidate.pipeline_id
            if name not in limits:
                spec = _spec_or_none(candidate.pipeline)
                limits[name] = spec.max_instances if spec is not None else None
            if limits[name] is not None and per_pipeline.get(name, 0) >= limits[name]:
                continue  # this batch filled the pipeline up
            if candidate.triggered_by == TriggeredBy.DAEMON_RESTART and per_pipeline.get(name):
                continue  # an instance claimed in this batch is live (the rule above)
            # The run keeps the commit its pipeline row was discovered from (git sync): the
            # checkout whose files match the configuration it starts with, read in this same
            # query (checkouts in use are collected under this claim's lock).
            commit = candidate.pipeline.git_commit
            updated = PipelineRun.objects.filter(id=candidate.id, status=RunStatus.PENDING).update(
                status=RunStatus.RUNNING, started_at=now, engine_id=engine_id, git_commit=commit
            )
            if updated != 1:
                continue  # cancelled meanwhile
            # What the update wrote (it found the row still PENDING, as read): no re-read.
            candidate.status, candidate.started_at = RunStatus.RUNNING, now
            candidate.engine_id, candidate.git_commit = engine_id, commit
            per_pipeline[name] = per_pipeline.get(name, 0) + 1
            claimed.append(candidate)
            if len(claimed) == free:
                break
    return claimed


def run_commits_in_use() -> set[str]:
    """The git commits whose checkouts must stay: those of RUNNING runs and those a run claimed
    from now on can get (its pipeline row's). Read under the claim's lock, so a claim that is
    committing meanwhile is counted, never missed."""
    with transaction.atomic():
        serialise("run-claim")
        running = PipelineRun.objects.filter(status=RunStatus.RUNNING).values_list(
            "git_commit", flat=True
        )
        discovered = Pipeline.objects.values_list("git_commit", flat=True)
        return ({*running} | {*discovered}) - {""}


def run_record_start(
    *,
    run: PipelineRun,
    container_id: str,
    env_vars: dict[str, str],
    log_file: Path | str,
    metrics_file: Path | str,
    limits: dict[str, object] | None = None,
) -> bool:
    """Store what the executor started (with the limits in force for the run). False if the
    run is no longer this engine's to run."""
    updated = PipelineRun.objects.filter(
        id=run.id, status=RunStatus.RUNNING, engine_id=run.engine_id
    ).update(
        container_id=container_id,
        env_vars=env_vars,
        log_file=str(log_file),
        metrics_file=str(metrics_file),
        limits=limits or {},
    )
    if updated:
        run.container_id = container_id
        run.env_vars = env_vars
        run.limits = limits or {}
        run.log_file = str(log_file)
        run.metrics_file = str(metrics_file)
    return bool(updated)


def run_requeue(*, run: PipelineRun, reason: str) -> bool:
    """Put a RUNNING run whose execution never started back in the queue (PENDING, same place:
    `queued_at` is kept), at most FASTFLOW_REQUEUE_MAX times; the reason goes into its log.
    False when it may not be re-queued any more (or is no longer this engine's): the caller
    fails it."""
    limit = settings.FASTFLOW_REQUEUE_MAX
    log_file = output_names(run)[0]
    requeued = PipelineRun.objects.filter(
        id=run.id,
        status=RunStatus.RUNNING,
        engine_id=run.engine_id,
        requeue_count__lt=limit,
    ).update(
        status=RunStatus.PENDING,
        started_at=None,
        engine_id="",
        container_id="",
        log_file=log_file,
        requeue_count=F("requeue_count") + 1,
    )
    run.refresh_from_db()
    if not requeued:
        return False
    note = f"{reason}; nothing ran: back in the queue ({run.requeue_count} of {limit})"
    logger.info("run %s: %s", run.id, note)
    log_append_notes(run=run, notes=[note])
    return True


def run_take_over(*, run: PipelineRun, engine_id: str) -> bool:
    """Move a RUNNING run from a dead engine to `engine_id`; only one engine can win."""
    taken = PipelineRun.objects.filter(
        id=run.id, status=RunStatus.RUNNING, engine_id=run.engine_id
    ).update(engine_id=engine_id)
    if taken:
        run.engine_id = engine_id
    return bool(taken)


def _cancelled_or(value: str) -> Case:
    # A requested cancel wins over whatever the execution reported: the user asked to stop it.
    return Case(
        When(cancel_requested_at__isnull=False, then=Value(RunStatus.CANCELLED)),
        default=Value(value),
    )


def _cancel_message_or(message: str) -> Case:
    return Case(
        When(cancel_requested_at__isnull=False, then=Value("cancelled by request")),
        default=Value(message),
    )


def run_finish(*, run: PipelineRun, outcome: Outcome) -> PipelineRun:
    """RUNNING → SUCCESS / FAILED (or CANCELLED if a cancel was requested), with counters and
    follow-ups (retry, downstream) in the same transaction."""
    status = RunStatus.SUCCESS if outcome.succeeded else RunStatus.FAILED
    # The executor's wording (it knows the run's limits), else the same vocabulary without them.
    # A success keeps a message only when the executor has one (e.g. output lost to a full disk).
    message = outcome.error or outcome_message(outcome)
    route, route_note = _route(outcome.route)
    # The process's real exit time: recording may come much later (a database outage). Kept
    # between the start and now, whatever the clock of a remote Docker daemon says.
    now = timezone.now()
    finished_at = min(outcome.finished_at or now, now)
    started_at = run.started_at
    duration = None
    if started_at is not None:
        finished_at = max(finished_at, started_at)
        duration = (finished_at - started_at).total_seconds()
    with transaction.atomic():
        finished = PipelineRun.objects.filter(id=run.id, status=RunStatus.RUNNING).update(
            status=_cancelled_or(status),
            error_message=_cancel_message_or(message),
            finished_at=finished_at,
            # From the start this engine knows (it claimed the run, or read it re-attaching),
            # in the same statement; re-stored below should the row say otherwise.
            duration=duration,
            exit_code=outcome.exit_code,
            setup_duration=outcome.setup_duration,
            uv_version=outcome.uv_version[:64],
            peak_memory_bytes=outcome.peak_memory_bytes,
            route=route,
        )
        run.refresh_from_db()
        if not finished:
            return run
        if run.started_at != started_at:
            _store_duration(run)
        notes = _after_finish(run)
    _log_notes(run, [route_note, *notes] if route_note else notes)
    return run


def _route(text: str | None) -> tuple[str, str]:
    """(the route label to record, a note for the log); the file's text is the pipeline's."""
    if text is None:
        return "", ""
    label = text.strip()
    if not label:
        return "", "route file is empty: no route recorded"
    try:
        return as_route_label(label), f"route: {label}"
    except SpecError as exc:
        return "", f"route file ignored: {exc}"


def run_fail(*, run: PipelineRun, reason: str, log_file: Path | str | None = None) -> PipelineRun:
    """Fail a PENDING or RUNNING run for a reason outside the pipeline's code (no image, a
    missing secret, the engine died). The reason is the run's error and goes into its log."""
    extra = {"log_file": str(log_file)} if log_file else {}
    with transaction.atomic():
        failed = PipelineRun.objects.filter(
            id=run.id, status__in=[RunStatus.PENDING, RunStatus.RUNNING]
        ).update(
            status=_cancelled_or(RunStatus.FAILED),
            error_message=_cancel_message_or(reason),
            finished_at=timezone.now(),
            **extra,
        )
        run.refresh_from_db()
        if not failed:
            return run
        _store_duration(run)
        notes = _after_finish(run)
    if run.status == RunStatus.FAILED:
        notes.insert(0, f"run failed: {reason}")
    _log_notes(run, notes)
    return run


def _store_duration(run: PipelineRun) -> None:
    """Store finished_at − started_at, so lists sort and filter on an indexed column instead of
    computing it for every row (a run that never started keeps NULL)."""
    if run.started_at is None or run.finished_at is None:
        return
    run.duration = (run.finished_at - run.started_at).total_seconds()
    PipelineRun.objects.filter(id=run.id).update(duration=run.duration)


def _after_finish(run: PipelineRun) -> list[str]:
    """Counters, then retry or downstream runs. Runs inside the finishing transaction, so a
    crash never leaves a finished run without its follow-ups; idempotency keys make a replay
    harmless. Returns notes for the run's log."""
    run_period_stats_record(run=run)
    counters = {"total_runs": F("total_runs") + 1}
    if run.status == RunStatus.SUCCESS:
        counters["successful_runs"] = F("successful_runs") + 1
    elif run.status == RunStatus.FAILED:
        counters["failed_runs"] = F("failed_runs") + 1
    if run.triggered_by == TriggeredBy.WEBHOOK:
        counters["webhook_runs"] = F("webhook_runs") + 1
    Pipeline.objects.filter(pipeline_name=run.pipeline_id).update(**counters)
    run_stats_record(run=run)

    if run.status == RunStatus.CANCELLED:
        return []
    notes: list[str] = []
    pipeline = Pipeline.objects.get(pipeline_name=run.pipeline_id)
    # Read once, after its counters changed, for everything below (the notification rules and
    # the run's effective configuration read it through the run).
    run.pipeline = pipeline
    if _spec_or_none(pipeline) is None:
        notify_run_finished(run=run, retry_queued=False)
        return ["no retry or downstream run: the pipeline's stored configuration is unreadable"]
    retry_queued = run.status == RunStatus.FAILED and _queue_retry(run, pipeline, notes)
    # In this transaction: the event is recorded exactly when the finish is.
    notify_run_finished(run=run, retry_queued=retry_queued)
    if retry_queued:
        return notes  # on_failure triggers wait until the retries are exhausted
    _queue_downstream(run, pipeline, notes)
    if run.status == RunStatus.FAILED and pipeline.spec.restart_on_crash:
        _queue_daemon_restart(run, pipeline, notes)
    return notes


def _queue_daemon_restart(run: PipelineRun, pipeline: Pipeline, notes: list[str]) -> None:
    cooldown = pipeline.spec.restart_cooldown
    plan = restart_plan(crashed=run, cooldown=cooldown)
    try:
        with transaction.atomic():
            restart = run_enqueue(
                pipeline=pipeline,
                triggered_by=TriggeredBy.DAEMON_RESTART,
                parameters=run.parameters,
                run_config_id=run.run_config_id or None,
                parent_run=run,
                idempotency_key=f"daemon_restart:{run.id}",
                not_before=timezone.now() + timedelta(seconds=plan.delay),
                chain_depth=run.chain_depth,
                restart_count=plan.restart_count,
            )
    except RunError as exc:
        notes.append(f"restart_on_crash: no restart queued: {exc}")
        return
    notes.append(restart_note(plan, cooldown=cooldown, restart=restart))
    if plan.crash_loop:
        daemon_crash_loop_detected(crashed=run, restart=restart, plan=plan)


def _queue_retry(run: PipelineRun, pipeline: Pipeline, notes: list[str]) -> bool:
    spec = pipeline.spec
    try:
        effective = spec.effective(run.run_config_id or None)
    except KeyError:
        notes.append(
            f"run configuration {run.run_config_id!r} no longer exists; "
            "using the pipeline's retry settings"
        )
        effective = spec.effective(None)
    attempt = run.retry_attempt + 1
    if effective.retry_attempts <= 0:
        return False
    if attempt > effective.retry_attempts:
        notes.append(f"no retry left ({effective.retry_attempts} of {effective.retry_attempts})")
        return False
    delay = max(float(effective.retry_strategy.delay_for(attempt)), 0.0)
    not_before = timezone.now() + timedelta(seconds=delay)
    try:
        with transaction.atomic():
            retry = run_enqueue(
                pipeline=pipeline,
                triggered_by=TriggeredBy.RETRY,
                parameters=run.parameters,
                run_config_id=run.run_config_id or None,
                parent_run=run,
                scheduled_job=run.scheduled_job,
                idempotency_key=f"retry:{run.id}",
                not_before=not_before,
                chain_depth=run.chain_depth,
                retry_attempt=attempt,
                audit=AuditContext.engine(),
                restart_count=run.restart_count,
            )
    except RunError as exc:
        notes.append(f"retry {attempt} of {effective.retry_attempts} not queued: {exc}")
        return False
    notes.append(
        f"retry {attempt} of {effective.retry_attempts} queued as run {retry.id}, "
        f"not before {not_before.isoformat(timespec='seconds')} ({delay:g} s)"
    )
    return True


def _queue_downstream(run: PipelineRun, pipeline: Pipeline, notes: list[str]) -> None:
    succeeded = run.status == RunStatus.SUCCESS
    depth = run.chain_depth + 1
    for trigger in pipeline.spec.downstream_triggers:
        if not trigger.fires_for(succeeded=succeeded, route=run.route):
            continue
        target = f"downstream pipeline '{trigger.pipeline}'"
        if trigger.run_config_id:
            target += f" (run configuration {trigger.run_config_id!r})"
        if trigger.on_route is not None:
            target += f" (route {trigger.on_route!r})"
        cap = settings.FASTFLOW_DOWNSTREAM_MAX_DEPTH
        if depth > cap:
            notes.append(
                f"{target} not triggered: the chain is already {run.chain_depth} runs deep "
                f"(FASTFLOW_DOWNSTREAM_MAX_DEPTH={cap}); is there a cycle?"
            )
            continue
        try:
            with transaction.atomic():
                child = run_enqueue(
                    pipeline=trigger.pipeline,
                    triggered_by=TriggeredBy.DOWNSTREAM,
                    run_config_id=trigger.run_config_id,
                    parent_run=run,
                    chain_depth=depth,
                    idempotency_key=_downstream_key(run, trigger),
                    audit=AuditContext.engine(),
                )
        except RunError as exc:
            notes.append(f"{target} not triggered: {exc}")
            continue
        notes.append(f"triggered {target}: run {child.id}")


def _downstream_key(run: PipelineRun, trigger: DownstreamTrigger) -> str:
    key = f"downstream:{run.id}:{trigger.pipeline}:{trigger.run_config_id or ''}"
    return key if trigger.on_route is None else f"{key}:route:{trigger.on_route}"


def _log_notes(run: PipelineRun, notes: list[str]) -> None:
    for note in notes:
        logger.info("run %s: %s", run.id, note)
    log_append_notes(run=run, notes=notes)
