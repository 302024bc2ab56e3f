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


@dataclass(frozen=True)
class RunSpec:
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
    mem_hard_limit: int | None = None  # bytes
    cpu_soft_limit: float | None = None  # cores; breaches noted in the log
    mem_soft_limit: int | None = None  # bytes; breaches noted in the log
    timeout: float | None = None  # seconds; None = no limit
    log_max_bytes: int = 50 * 1024 * 1024
    network: str = ""  # the container's network (`none`: no egress); "" = the executor's default


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
    """

    name: str
    # Whether executions outlive the engine process. True (containers): a stopping engine leaves
    # them running and the next engine re-attaches (see `reattach`). False (local processes,
    # whose pipes die with the engine): a stopping engine cancels them and fails their runs.
    survives_engine_restart: bool

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
        that message and removes the execution (`remove_orphan`).
        """

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
        self, *, pipeline_name: str, pipeline_dir: Path, python_version: str, timeout: float
    ) -> str:
        """Install the pipeline's `requirements.txt` into this executor's uv cache exactly as a
        run would use it (same image/interpreter, same cache), within `timeout` seconds, and on
        success record the warm stamp (`uvcache.mark_warm`) so the next runs resolve offline.

        Returns "" on success, else a readable message for the pipeline's warm-up error (which
        step failed and the tail of its output). Raises InfrastructureError when the executor
        itself is unusable. Never writes to the pipeline folder; leaves nothing running.
        """

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise InfrastructureError when the executor cannot work (e.g. Docker unreachable);
        runs wait (stay PENDING) until it passes again. Called before every reconcile."""
