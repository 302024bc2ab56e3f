"""Claims PENDING runs and drives each one in a worker thread: spec → start → wait → finish →
clean up (the container is removed after the run's status is recorded).

No DB transaction is ever open while a worker talks to the executor: the claim, the start
record and the finish are separate short transactions around the container/process I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Q

from fastflow_site.logformat import log_context
from pipelines_app.discovery import resource_maxima
from pipelines_app.spec import EffectiveConfig
from runs_app.engine.base import Execution, Executor, InfrastructureError, RunSpec
from runs_app.engine.outputs import output_dir_for, output_dir_remove, outputs_collect
from runs_app.environment import RunEnvironment, RunEnvironmentError, run_environment
from runs_app.logs import log_append_notes, run_artifacts_dir, run_log_file, run_metrics_file
from runs_app.models import PipelineRun
from runs_app.outcome import Outcome
from runs_app.services import run_claim_next, run_fail, run_finish, run_record_start

logger = logging.getLogger(__name__)

DB_RETRY_SECONDS = 300.0
DB_RETRY_PAUSE = 2.0


class RunSpecError(Exception):
    """The run cannot be prepared (pipeline folder gone, configuration vanished)."""


def run_spec_build(
    *, run: PipelineRun, refuse_not_runnable: bool = False
) -> tuple[RunSpec, RunEnvironment]:
    """Everything the executor needs, from the pipeline's spec and the run's row. With
    `refuse_not_runnable`, refuse a pipeline that is disabled, missing or broken (a new start; a
    re-attach after a restart lets a running run finish)."""
    pipeline = run.pipeline
    if refuse_not_runnable:
        # Re-read: a run queued earlier (over the limit, a delayed retry) must not start once
        # its pipeline was disabled or its pipeline.json broke (it would run with defaults).
        pipeline.refresh_from_db()
        if not pipeline.is_runnable:
            raise RunSpecError(f"not started: {pipeline.not_runnable_reason}")
    try:
        # Through the run's own commit (git sync), not the symlink: a sync during the run, or
        # before a re-attach, does not move its files.
        folder = pipeline.folder_at(run.git_commit)
    except ValueError as exc:
        raise RunSpecError(str(exc)) from None
    spec = pipeline.spec
    if not (folder / spec.entry_file).is_file():
        where = f" in the checkout of commit {run.git_commit[:12]}" if run.git_commit else ""
        raise RunSpecError(
            f"pipeline folder {folder}{where} has no {spec.entry_file} (was it removed?)"
        )
    try:
        effective = spec.effective(run.run_config_id or None)
    except KeyError:
        raise RunSpecError(
            f"pipeline '{pipeline.pipeline_name}' has no run configuration "
            f"{run.run_config_id!r} any more"
        ) from None
    environment = run_environment(run=run)
    limits = _hard_limits(effective)
    run_spec = RunSpec(
        run_id=str(run.id),
        pipeline_name=pipeline.pipeline_name,
        pipeline_dir=folder,
        has_requirements=(folder / "requirements.txt").is_file(),
        python_version=spec.python_version or settings.FASTFLOW_DEFAULT_PYTHON_VERSION,
        env=environment.env,
        mask_values=environment.mask_values,
        log_file=Path(run.log_file) if run.log_file else run_log_file(run),
        metrics_file=Path(run.metrics_file) if run.metrics_file else run_metrics_file(run),
        **limits,
        cpu_soft_limit=effective.cpu_soft_limit,
        mem_soft_limit=effective.mem_soft_limit,
        timeout=float(effective.timeout) if effective.timeout else None,
        log_max_bytes=settings.FASTFLOW_LOG_MAX_BYTES,
        output_dir=output_dir_for(str(run.id)),
        extra_requirements=spec.extra_requirements,
        notebook=spec.is_notebook,
        cells=tuple((cell.retries, cell.delay_seconds) for cell in spec.cells),
    )
    return run_spec, environment


def _hard_limits(effective: EffectiveConfig) -> dict[str, float | int]:
    """The run's hard limits: pipeline.json's, else the installation's defaults; never above
    its maxima (discovery refuses such a pipeline.json; a maximum lowered since is caught here)."""
    limits = {
        "mem_hard_limit": effective.mem_hard_limit or settings.FASTFLOW_RUN_MEM_DEFAULT,
        "cpu_hard_limit": effective.cpu_hard_limit or settings.FASTFLOW_RUN_CPU_DEFAULT,
        "pids_limit": effective.pids_limit or settings.FASTFLOW_RUNNER_PIDS_LIMIT,
        "tmp_size": effective.tmp_size or settings.FASTFLOW_RUNNER_TMPFS_SIZE,
    }
    maxima = resource_maxima()
    for key, value in limits.items():
        if reason := maxima.check(key, value):
            raise RunSpecError(f"not started: {key} {reason}")
    return limits


@dataclass
class _Active:
    run: PipelineRun
    thread: threading.Thread | None = None
    execution: Execution | None = None
    cancel_sent: bool = False
    lost: bool = False  # another engine took the run over


class Dispatcher:
    """Runs up to `slots` executions at once, each in its own worker thread.

    Workers are daemon threads rather than a ThreadPoolExecutor's: on a graceful shutdown
    with the docker executor the engine must exit while containers keep running (the next
    engine re-attaches), and a pool's threads would keep the process alive until they end.
    """

    def __init__(self, *, engine_id: str, executor: Executor, slots: int) -> None:
        self.engine_id = engine_id
        self.executor = executor
        self.slots = slots
        self.stopping = False
        self.wakeup = threading.Event()  # set whenever a worker ends: a slot is free
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}

    @property
    def survives_restart(self) -> bool:
        """Whether executions outlive the engine process (see Executor.survives_engine_restart)."""
        return self.executor.survives_engine_restart

    @property
    def free_slots(self) -> int:
        with self._lock:
            return self.slots - len(self._active)

    def active_run_ids(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def dispatch(self) -> int:
        """Claim and start runs while slots are free; returns how many were started."""
        started = 0
        while not self.stopping and self.free_slots > 0:
            run = run_claim_next(engine_id=self.engine_id)
            if run is None:
                break
            self._launch(run, None)
            started += 1
        return started

    def adopt(self, run: PipelineRun, execution: Execution) -> None:
        """Drive an execution re-attached after an engine restart, like one we started."""
        self._launch(run, execution)

    def _launch(self, run: PipelineRun, execution: Execution | None) -> None:
        active = _Active(run=run, execution=execution)
        thread = threading.Thread(
            target=self._work, args=(active,), name=f"run-{run.id}", daemon=True
        )
        active.thread = thread
        with self._lock:
            self._active[str(run.id)] = active
        thread.start()

    def check_cancellations(self) -> int:
        """Stop executions whose run got a cancel request, and let go of runs another engine
        took over (one query for both); returns how many executions were signalled."""
        with self._lock:
            candidates = {rid: a for rid, a in self._active.items() if a.execution and not a.lost}
        if not candidates:
            return 0
        rows = (
            PipelineRun.objects.filter(id__in=list(candidates))
            .filter(Q(cancel_requested_at__isnull=False) | ~Q(engine_id=self.engine_id))
            .values_list("id", "engine_id")
        )
        signalled = 0
        for run_id, owner in rows:
            active = candidates[str(run_id)]
            if owner != self.engine_id:
                # Our heartbeat went stale (e.g. a database stall) and another engine
                # re-attached the run: it follows the container now; two followers would
                # write every line twice.
                active.lost = True
                logger.warning(
                    "run %s was taken over by engine %s; no longer following it", run_id, owner
                )
                active.execution.abandon()
            elif not active.cancel_sent:
                active.cancel_sent = True
                logger.info("run %s: cancel requested, stopping it", run_id)
                active.execution.cancel()
            else:
                continue
            signalled += 1
        return signalled

    def stop(self, *, timeout: float) -> None:
        """Graceful shutdown. Executions that survive an engine restart are left running;
        the others are stopped and their runs failed with the reason."""
        self.stopping = True
        if self.survives_restart:
            return
        with self._lock:
            actives = list(self._active.values())
        for active in actives:
            if active.execution is not None:
                active.execution.cancel()
        for active in actives:
            if active.thread is not None:
                active.thread.join(timeout)

    # --- one run, in its worker thread -----------------------------------------------------------

    def _work(self, active: _Active) -> None:
        with log_context(run_id=str(active.run.id), pipeline=active.run.pipeline_id):
            self._drive(active)

    def _drive(self, active: _Active) -> None:
        run = active.run
        try:
            if active.execution is None:
                active.execution = self._start(run)
                if active.execution is None:
                    return
                if self.stopping and self.survives_restart:
                    return
            execution = active.execution
            try:
                outcome = execution.wait_for_outcome()
                if not active.lost:  # else its new owner records the result
                    self._collect(run, execution.spec, outcome)
                    self._finish(run, outcome)
            finally:
                # After the result is recorded: removing a container costs a daemon round trip
                # that must not delay the run's terminal status.
                self._cleanup(run, execution)
        except Exception as exc:  # noqa: BLE001 - poison-pill guard: fail the run, keep the engine
            logger.exception("run %s: the engine failed while driving it", run.id)
            if active.lost:
                return  # not ours to fail any more
            try:
                run_fail(run=run, reason=f"engine error: {exc.__class__.__name__}: {exc}")
            except Exception:  # noqa: BLE001
                logger.exception("run %s: could not even mark it failed", run.id)
        finally:
            with self._lock:
                self._active.pop(str(run.id), None)
            self.wakeup.set()
            connection.close()

    def _start(self, run: PipelineRun) -> Execution | None:
        log_file = run_log_file(run)
        try:
            spec, environment = run_spec_build(run=run, refuse_not_runnable=True)
            execution = self.executor.start(spec)
        except (RunSpecError, RunEnvironmentError, InfrastructureError) as exc:
            logger.warning("run %s could not start: %s", run.id, exc)
            output_dir_remove(output_dir_for(str(run.id)))  # before the end is visible
            run_fail(run=run, reason=str(exc), log_file=log_file)
            return None
        recorded = run_record_start(
            run=run,
            container_id=execution.handle_id,
            env_vars=environment.masked,
            limits=self.executor.limits_in_force(spec),
            log_file=spec.log_file,
            metrics_file=spec.metrics_file,
        )
        if not recorded:
            # Finished elsewhere meanwhile (e.g. cancelled and reconciled): do not run it.
            logger.warning("run %s is no longer ours; stopping its execution", run.id)
            execution.cancel()
            execution.wait()
            return None
        return execution

    @staticmethod
    def _collect(run: PipelineRun, spec: RunSpec, outcome: Outcome) -> None:
        """The route and the executed notebook, from the run's output directory."""
        artifacts = run_artifacts_dir(run)
        collected = outputs_collect(output_dir=spec.output_dir, artifacts_dir=artifacts)
        outcome.route = collected.route
        log_append_notes(run=run, notes=collected.notes)

    @staticmethod
    def _cleanup(run: PipelineRun, execution: Execution) -> None:
        try:
            execution.cleanup()
        except Exception:  # noqa: BLE001 - reconcile removes what is left over
            logger.exception("run %s: cleaning up its execution failed", run.id)
        if not execution.abandoned.is_set():  # else its new owner still needs it
            output_dir_remove(execution.spec.output_dir)

    def _finish(self, run: PipelineRun, outcome: Outcome) -> None:
        if self.stopping and not self.survives_restart and outcome.cancelled:
            run_fail(
                run=run,
                reason=(
                    f"runscheduler {self.engine_id} stopped while the run was in progress "
                    f"({self.executor.name} runs cannot outlive the engine)"
                ),
            )
            return
        self._persist(lambda: run_finish(run=run, outcome=outcome), run)

    @staticmethod
    def _persist(action: Callable[[], object], run: PipelineRun) -> None:
        """Write a result through a database outage: the outcome exists only in memory."""
        deadline = time.monotonic() + DB_RETRY_SECONDS
        while True:
            try:
                action()
                return
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() > deadline:
                    raise
                logger.warning("run %s: database unavailable (%s); retrying", run.id, exc)
                connection.close()
                time.sleep(DB_RETRY_PAUSE)
