"""The executor contract: what the engine hands an executor and what it gets back.

Executors know nothing of the database, HTTP or the admin. The engine builds a `RunSpec`,
calls `Executor.start()` (returns once the container/process exists), then blocks in
`Execution.wait_for_outcome()` in a worker thread while the execution streams its log and
metrics files, records the outcome, and only then calls `Execution.cleanup()`. After an engine
restart, `Executor.reattach()` adopts what is still running; the cache warm-up calls
`Executor.warm()`. `Executor` documents what each method must do for a new executor.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from pathlib import Path

from runs_app.outcome import Outcome


class InfrastructureError(Exception):
    """The executor could not run the pipeline (no Docker daemon, missing image, ...).

    The message is shown to users as the run's error, so make it specific and actionable.
    """


class ExecutionNeverStarted(Exception):
    """Raised by `Executor.reattach` for an execution that was created but never started (the
    engine died in between): nothing ran, so the engine puts the run back in the queue. The
    executor has removed what was created before raising."""


@dataclass(frozen=True)
class RunSpec:
    """Everything an executor needs to run one pipeline run; built by the engine.

    Resource limits: the engine fills the hard limits from pipeline.json or the installation's
    defaults, within its maxima (`FASTFLOW_RUN_MEM_*`, `FASTFLOW_RUN_CPU_*`,
    `FASTFLOW_RUNNER_PIDS_LIMIT*`, `FASTFLOW_RUNNER_TMPFS_SIZE*`). An executor enforces each one
    it can and names those in `Executor.enforced_limits`; the run records exactly those as the
    limits in force (`Executor.limits_in_force`). `None` (only in specs not built by the
    engine, e.g. tests and warm-ups) means no memory/CPU limit and the installation's default
    for processes and /tmp.
    """

    run_id: str
    pipeline_name: str
    pipeline_dir: Path  # the pipeline folder; mounted read-only at /app (docker) or used as cwd
    has_requirements: bool
    python_version: str
    env: dict[str, str]  # final environment for user code (already merged, plaintext)
    mask_values: tuple[str, ...]  # secret values to replace with *** in the log (>= 4 chars)
    log_file: Path
    metrics_file: Path
    cpu_hard_limit: float | None = None  # cores
    mem_hard_limit: int | None = None  # bytes, without swap
    cpu_soft_limit: float | None = None  # cores; breaches noted in the log
    mem_soft_limit: int | None = None  # bytes; breaches noted in the log
    timeout: float | None = None  # seconds; None = no limit
    log_max_bytes: int = 50 * 1024 * 1024
    network: str = ""  # the container's network (`none`: no egress); "" = the executor's default
    pids_limit: int | None = None  # processes and threads
    tmp_size: int | None = None  # bytes of the run's writable /tmp
    # A per-run directory the run may write and the engine reads after it ended (the route
    # file, the executed notebook); mounted read-write at /fastflow in a container. Created
    # empty by the engine before start() (engine/outputs.py), removed after the run.
    output_dir: Path | None = None
    # Installed into the run's environment besides requirements.txt (`uv run --with`).
    extra_requirements: tuple[str, ...] = ()
    # A notebook pipeline: run main.ipynb with the notebook runner; per code cell
    # (retries, delay_seconds) from pipeline.json's `cells`.
    notebook: bool = False
    cells: tuple[tuple[int, float], ...] = ()

    @property
    def needs_environment(self) -> bool:
        """Whether uv installs packages for this run (and so a cache warm-up applies)."""
        return self.has_requirements or bool(self.extra_requirements)


# The limits an executor can enforce, as `Executor.enforced_limits` names them, and the RunSpec
# field each comes from. Timeout and the log cap are enforced by every executor (the engine's
# log writer and supervision), so they are always in force.
LIMIT_FIELDS = {
    "memory_bytes": "mem_hard_limit",
    "cpus": "cpu_hard_limit",
    "pids": "pids_limit",
    "tmp_bytes": "tmp_size",
}


@dataclass
class Execution(abc.ABC):
    """A started run. `wait()` blocks until it ends, streaming logs and metrics meanwhile."""

    spec: RunSpec
    handle_id: str  # container id / pid, stored on the run as container_id
    cancel_event: threading.Event = field(default_factory=threading.Event)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> Outcome:
        """Block until the run ends (honouring spec.timeout and cancel()), then clean up."""
        try:
            return self.wait_for_outcome()
        finally:
            self.cleanup()

    @abc.abstractmethod
    def wait_for_outcome(self) -> Outcome:
        """Block until the run ends (honouring spec.timeout and cancel()) and return as soon as
        its outcome is known and its log and metrics files are complete. What is left to tidy
        up (e.g. removing the container) waits for `cleanup()`, so the engine records the
        run's status first."""

    def cleanup(self) -> None:  # noqa: B027 - optional hook
        """Release what an ended execution still holds (remove its container, its temporary
        directory). Called once after `wait_for_outcome()` returned or raised; never raises."""

    def cancel(self) -> None:
        """Ask the run to stop: SIGTERM, then SIGKILL after the grace period; wait() returns."""
        self.cancel_event.set()

    def abandon(self) -> None:
        """Another engine took the run over (this engine's heartbeat went stale): stop writing
        its log and metrics at once and let `wait_for_outcome()` return soon, with an outcome
        nobody records. An execution that survives its engine (a container) is left running for
        its new owner and `cleanup()` does not remove it; one that cannot (a local process,
        which the new owner could not adopt) is killed."""
        self.abandoned.set()


class Executor(abc.ABC):
    """One way of running pipelines (a Docker container, a local process; next: a Kubernetes
    Job, a pool of warm containers). The engine creates one instance per process
    (`executors.get_executor()`) and never branches on which one it has: everything an executor
    does differently is behind these methods, so a new one plugs in by subclassing this and
    adding a name to `executors.py`, without touching the dispatcher, reconciliation or the
    cache warm-up.

    Rules for every method:
    - No database, HTTP or admin: the engine passes in everything (`RunSpec`) and records the
      results itself. Exceptions meant for users are `InfrastructureError` with a specific,
      actionable message (it becomes the run's error or the warm-up's error).
    - Thread-safety: one instance is shared by all the engine's threads. `start()` is called
      from several run worker threads at once; `reattach()`, `running_handles()`,
      `remove_orphan()` and `check()` from the main thread and the periodic reconcile thread;
      `warm()` from the cache-warmer thread (one warm-up at a time, but concurrently with runs).
      Shared state (a client connection, caches) must be guarded by a lock, as
      `DockerExecutor.client` is; an `Execution` belongs to the worker thread that waits on it,
      except `cancel()` and `abandon()`, which any thread may call.
    - Every execution it creates is findable again by run id (labels, a stored handle), so that
      recovery works after the engine process died at any point.

    Rules every executor keeps (the Docker one is the reference; the local one says where it
    cannot, in its module docstring and docs/security.md):
    - Shared state is read-only to runs. No run may change what another pipeline's run imports
      or executes: the shared uv cache is written by `warm()` only; a run with requirements
      uses the environment `warm()` prepared (`uvcache.env_ready`), mounted or otherwise made
      read-only, and a run whose environment is not prepared installs into a cache of its own
      that ends with it (`uvcache.py`). Only what dies with the run (its /tmp) is writable.
    - Limits: enforce the RunSpec's hard limits you can, and name them in `enforced_limits`.
    - Log lines carry their source: feed the pipeline's stdout and stderr to the `LogWriter`
      separately with `source=STDOUT` / `STDERR` (never merge them, never derive a source from
      the text); only the engine writes notes (`LogWriter.note`). The wrapper's ready line is
      taken only as the first stdout line (`LogWriter(ready_token=...)`), so setup time and
      re-attaching never trust what the pipeline prints.
    - A write that fails (a full log disk) never fails the run: the `LogWriter` drops and
      counts; report `LogWriter.loss_summary()` as `Outcome.log_loss`.
    - `Outcome.finished_at` is when the process exited (the platform's own record of it when
      there is one), not when the outcome was noticed.
    """

    name: str
    # Whether executions outlive the engine process. True (containers): a stopping engine leaves
    # them running and the next engine re-attaches (see `reattach`). False (local processes,
    # whose pipes die with the engine): a stopping engine cancels them and fails their runs.
    survives_engine_restart: bool
    # Which of LIMIT_FIELDS this executor enforces (the rest are not in force for its runs).
    enforced_limits: frozenset[str] = frozenset()

    def limits_in_force(self, spec: RunSpec) -> dict[str, object]:
        """What the run records as its limits (`PipelineRun.limits`, shown on the run page)."""
        limits: dict[str, object] = {"executor": self.name}
        for name, attr in LIMIT_FIELDS.items():
            if name in self.enforced_limits:
                limits[name] = getattr(spec, attr)
        limits["timeout_seconds"] = spec.timeout
        limits["log_max_bytes"] = spec.log_max_bytes
        return limits

    @abc.abstractmethod
    def start(self, spec: RunSpec) -> Execution:
        """Start the run and return at once, as soon as the container/process exists (the
        engine records its `handle_id` next); the run's output is written by the returned
        Execution while the engine waits on it. Raises InfrastructureError when it cannot
        start (nothing may be left behind then)."""

    @abc.abstractmethod
    def reattach(self, spec: RunSpec, handle_id: str) -> Execution | None:
        """Re-attach to a run started by an earlier engine process, or None if it is gone.

        Re-attaching means adopting the execution as if this engine had started it: the
        returned Execution continues the run's log and metrics files where the previous
        writer stopped (no line twice, none lost), honours cancel/timeout from now on, and its
        `wait_for_outcome()` returns the real outcome. If the container/process already exited,
        `wait_for_outcome()` returns its outcome at once (appending any output not yet
        written). An executor whose executions cannot be adopted (`survives_engine_restart`
        False) stops a survivor and returns None; the engine then fails the run with a reason.
        Raises InfrastructureError when re-attaching fails; the engine then fails the run with
        that message and removes the execution (`remove_orphan`). Raises ExecutionNeverStarted
        (after removing it) when the execution exists but never started: the run is re-queued.
        """

    def find_handle(self, run_id: str) -> str | None:
        """The handle of an execution of `run_id` that exists although none was recorded (the
        engine died between starting it and recording its handle), or None. The engine asks
        before it re-queues a run that seems never to have started: a run must not run twice.
        The default looks in `running_handles()`; an executor that cannot list its executions
        cheaply overrides this with a targeted search. Raises InfrastructureError when it cannot
        tell (the run is then left for the next reconcile)."""
        return self.running_handles().get(run_id)

    @abc.abstractmethod
    def running_handles(self) -> dict[str, str]:
        """run_id → handle_id of every execution of ours that exists (e.g. labelled containers,
        running or exited), so reconciliation can remove those without a live run. An executor
        that cannot list its executions returns {} and relies on `reattach()` with the stored
        handle. Raises InfrastructureError when it cannot tell: reconciliation then touches
        nothing this round (a live execution must never be taken for a dead one)."""

    @abc.abstractmethod
    def remove_orphan(self, handle_id: str) -> None:
        """Stop and remove an execution that has no run (or a terminal one). A handle that is
        already gone is not an error; other failures raise InfrastructureError."""

    @abc.abstractmethod
    def warm(
        self,
        *,
        pipeline_name: str,
        pipeline_dir: Path,
        python_version: str,
        timeout: float,
        extra_requirements: tuple[str, ...] = (),
    ) -> str:
        """Build the environment runs of the pipeline execute (`uvcache.py`): its
        `requirements.txt` (if any) and `extra_requirements`, installed through this executor's
        shared uv cache with the runs' image/interpreter, within `timeout` seconds; published
        only when complete, so the next runs use it instead of installing for themselves.

        Returns "" on success, else a readable message for the pipeline's warm-up error (which
        step failed and the tail of its output). Raises InfrastructureError when the executor
        itself is unusable. Never writes to the pipeline folder; leaves nothing running.
        """

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise InfrastructureError when the executor cannot work (e.g. Docker unreachable);
        runs wait (stay PENDING) until it passes again. Called before every reconcile."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """The engine is stopping (after its runs were left or stopped): release what the
        executor keeps ahead of demand (the Docker warm pool's idle containers). Never raises."""
