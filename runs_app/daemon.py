"""Daemon pipelines: when a crashed daemon is restarted, and how a crash loop backs off.

A pipeline with `restart_on_crash` is restarted after its final failure (its retries, if any,
used up) once `restart_cooldown` has passed; `runs_app.services` queues that run in the
finishing transaction (idempotency key `daemon_restart:<crashed run>`, so a finish replayed by
another engine never queues a second one). This module only decides the delay:

- a run that crashed within FASTFLOW_DAEMON_STABLE_SECONDS of its start was a *quick* crash;
  the restart's `restart_count` is the crashed run's plus one, else the streak starts at 1;
- past FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS quick crashes in a row the daemon is crash-looping:
  the cooldown doubles with every further one, up to FASTFLOW_DAEMON_BACKOFF_MAX_SECONDS. The
  back-off is noted in the crashed run's log, shown on the pipeline's admin page, and reported
  as the `daemon_crash_loop` notification event (`daemon_crash_loop_detected`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from runs_app.models import PipelineRun, RunStatus, TriggeredBy
from runs_app.notify import notify_daemon_crash_loop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPlan:
    restart_count: int  # quick crashes in a row, this one included
    delay: float  # seconds until the restart may start
    crash_loop: bool


def uptime_seconds(run: PipelineRun) -> float:
    if run.started_at is None or run.finished_at is None:
        return 0.0
    return max((run.finished_at - run.started_at).total_seconds(), 0.0)


def restart_plan(*, crashed: PipelineRun, cooldown: int) -> RestartPlan:
    quick = uptime_seconds(crashed) < settings.FASTFLOW_DAEMON_STABLE_SECONDS
    count = crashed.restart_count + 1 if quick else 1
    threshold = settings.FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS
    if count <= threshold:
        return RestartPlan(restart_count=count, delay=float(cooldown), crash_loop=False)
    cap = settings.FASTFLOW_DAEMON_BACKOFF_MAX_SECONDS
    # 2 ** n overflows nothing here: the exponent is bounded before it is used.
    backoff = max(cooldown, 1) * 2 ** min(count - threshold, 32)
    return RestartPlan(
        restart_count=count, delay=float(max(cooldown, min(backoff, cap))), crash_loop=True
    )


def restart_note(plan: RestartPlan, *, cooldown: int, restart: PipelineRun) -> str:
    when = restart.not_before.isoformat(timespec="seconds") if restart.not_before else "now"
    if not plan.crash_loop:
        return (
            f"restart_on_crash: restart queued as run {restart.id}, not before {when} "
            f"({plan.delay:g} s)"
        )
    return (
        f"restart_on_crash: crash loop, {plan.restart_count} quick crashes in a row (each within "
        f"{settings.FASTFLOW_DAEMON_STABLE_SECONDS:g} s of its start); backing off: restart "
        f"queued as run {restart.id}, not before {when} ({plan.delay:g} s instead of the "
        f"{cooldown} s cooldown)"
    )


def daemon_crash_loop_detected(
    *, crashed: PipelineRun, restart: PipelineRun, plan: RestartPlan
) -> None:
    """A crash-looping daemon, reported inside the finishing transaction once per crash (the
    restart run's idempotency key guarantees it): the `daemon_crash_loop` notification event
    and a warning in the engine's log (the run's log and the pipeline's admin page show it
    too)."""
    notify_daemon_crash_loop(
        crashed=crashed, restart=restart, restart_count=plan.restart_count, delay=plan.delay
    )
    logger.warning(
        "pipeline %s is crash-looping: %d quick crashes in a row; run %s restarts it in %g s",
        crashed.pipeline_id,
        plan.restart_count,
        restart.id,
        plan.delay,
    )


@dataclass(frozen=True)
class DaemonState:
    """What the pipeline's admin page says about a daemon: its latest restart and whether it
    is crash-looping (backing off) now."""

    last_restart: PipelineRun | None
    crash_loop: bool


def daemon_state(*, pipeline_name: str) -> DaemonState:
    last = (
        PipelineRun.objects.filter(
            pipeline_id=pipeline_name, triggered_by=TriggeredBy.DAEMON_RESTART
        )
        .order_by("-queued_at")
        .first()
    )
    if last is None:
        return DaemonState(last_restart=None, crash_loop=False)
    looping = last.restart_count > settings.FASTFLOW_DAEMON_CRASH_LOOP_RESTARTS
    if looping and last.status == RunStatus.RUNNING and last.started_at is not None:
        # Up longer than a quick crash: it recovered, whatever the streak that led here.
        up = (timezone.now() - last.started_at).total_seconds()
        looping = up < settings.FASTFLOW_DAEMON_STABLE_SECONDS
    if looping and last.status == RunStatus.SUCCESS:
        looping = False
    return DaemonState(last_restart=last, crash_loop=looping)
