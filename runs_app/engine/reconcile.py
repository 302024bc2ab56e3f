"""Recovery after an engine crash, on start and periodically. No run stays RUNNING forever.

1. A RUNNING run whose engine is gone (no fresh heartbeat, or its process on this host is
   dead) is taken over by a conditional UPDATE, so exactly one engine handles it. Then:
   its container still runs → re-attached (log and metrics continue, it finishes normally);
   it exited → finished from its exit code (the executor's re-attached execution returns at
   once); it never started (no execution, or one created but not started) → back in the queue,
   at most FASTFLOW_REQUEUE_MAX times; anything else → failed with the reason.
2. An execution of ours (a labelled container) with no run, or a finished one, is removed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from runs_app.engine.base import ExecutionNeverStarted, Executor, InfrastructureError
from runs_app.engine.dispatcher import Dispatcher, RunSpecError, run_spec_build
from runs_app.engine.identity import engines_sweep, live_engine_ids
from runs_app.engine.outputs import output_dir_for, output_dir_remove
from runs_app.environment import RunEnvironmentError
from runs_app.logs import run_log_file
from runs_app.models import TERMINAL_STATUSES, PipelineRun, RunStatus
from runs_app.services import run_fail, run_requeue, run_take_over

logger = logging.getLogger(__name__)

LOST_AFTER_SECONDS = 60.0


@dataclass
class ReconcileReport:
    reattached: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def reconcile(*, engine_id: str, executor: Executor, dispatcher: Dispatcher) -> ReconcileReport:
    report = ReconcileReport()
    try:
        handles = executor.running_handles()
    except InfrastructureError as exc:
        # Without the executor we cannot tell a live container from a dead one: touch nothing.
        logger.warning("reconcile skipped: %s", exc)
        return report

    live = live_engine_ids(me=engine_id)
    orphaned = PipelineRun.objects.filter(status=RunStatus.RUNNING).exclude(engine_id__in=live)
    for run in orphaned.select_related("pipeline"):
        previous = run.engine_id or "an unknown engine"
        if not run_take_over(run=run, engine_id=engine_id):
            continue
        _recover(run, previous, handles.get(str(run.id)), executor, dispatcher, report)
    engines_sweep(live=live)

    # Our own runs that no worker drives any more (e.g. finishing failed through a long
    # database outage). Claimed a while ago, so never one between claim and launch.
    active = dispatcher.active_run_ids()
    lost = (
        PipelineRun.objects.filter(
            status=RunStatus.RUNNING,
            engine_id=engine_id,
            started_at__lt=timezone.now() - timedelta(seconds=LOST_AFTER_SECONDS),
        )
        .exclude(id__in=list(active))
        .select_related("pipeline")
    )
    for run in lost:
        _recover(run, engine_id, handles.get(str(run.id)), executor, dispatcher, report)

    active = dispatcher.active_run_ids()
    for run_id, handle in handles.items():
        if run_id in active or not _is_uuid(run_id):
            continue
        status = PipelineRun.objects.filter(id=run_id).values_list("status", flat=True).first()
        if status is None or status in TERMINAL_STATUSES:
            try:
                executor.remove_orphan(handle)
            except InfrastructureError as exc:
                logger.warning("could not remove orphan %s of run %s: %s", handle, run_id, exc)
                continue
            output_dir_remove(output_dir_for(run_id))
            report.removed.append(handle)
            logger.info("removed orphan execution %s (run %s: %s)", handle, run_id, status)
    return report


def _recover(
    run: PipelineRun,
    previous: str,
    handle: str | None,
    executor: Executor,
    dispatcher: Dispatcher,
    report: ReconcileReport,
) -> None:
    handle = handle or run.container_id
    reason = ""
    if not handle:
        try:
            handle = executor.find_handle(str(run.id))
        except InfrastructureError as exc:
            logger.warning("run %s: cannot tell whether it started (%s); later", run.id, exc)
            return
    if not handle:
        _requeue_or_fail(
            run, f"the engine running it ({previous}) stopped before starting it", report
        )
        return
    try:
        spec, _ = run_spec_build(run=run)
    except (RunSpecError, RunEnvironmentError) as exc:
        spec = None
        reason = f"the engine running it ({previous}) stopped, and re-attaching failed: {exc}"
    execution = None
    if spec is not None:
        try:
            execution = executor.reattach(spec, handle)
        except ExecutionNeverStarted as exc:
            _requeue_or_fail(
                run,
                f"the engine running it ({previous}) stopped before starting it ({exc})",
                report,
            )
            return
        except InfrastructureError as exc:
            reason = f"the engine running it ({previous}) stopped; re-attaching failed: {exc}"
    if execution is not None:
        logger.info("run %s: re-attached to %s (was %s)", run.id, handle, previous)
        report.reattached.append(str(run.id))
        dispatcher.adopt(run, execution)
        return
    _give_up(run, previous, handle, executor, reason, report)


def _give_up(
    run: PipelineRun,
    previous: str,
    handle: str,
    executor: Executor,
    reason: str,
    report: ReconcileReport,
) -> None:
    """The run's execution cannot be re-attached: stop what is left of it, fail the run."""
    if not reason:
        reason = (
            f"the engine running it ({previous}) stopped and its {executor.name} execution "
            f"{handle} cannot be re-attached"
        )
    try:
        executor.remove_orphan(handle)  # e.g. kill a local run's process group
    except InfrastructureError as exc:
        logger.warning("run %s: could not remove %s: %s", run.id, handle, exc)
    _fail(run, reason, report)


def _requeue_or_fail(run: PipelineRun, reason: str, report: ReconcileReport) -> None:
    """Nothing ran: the run goes back to the queue, unless it did so too often already."""
    if run_requeue(run=run, reason=reason):
        logger.warning("run %s: %s; re-queued", run.id, reason)
        report.requeued.append(str(run.id))
        return
    if run.status != RunStatus.RUNNING:
        return  # cancelled or finished meanwhile: nothing to do
    _fail(run, f"{reason}, and it was re-queued {run.requeue_count} times already", report)


def _fail(run: PipelineRun, reason: str, report: ReconcileReport) -> None:
    logger.warning("run %s: %s", run.id, reason)
    report.failed.append(str(run.id))
    log_file = run.log_file or run_log_file(run)
    run_fail(run=run, reason=reason, log_file=log_file)
    output_dir_remove(output_dir_for(str(run.id)))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
