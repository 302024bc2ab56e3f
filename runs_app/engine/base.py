"""The executor contract: what the engine hands an executor and what it gets back.

Executors know nothing of the database, HTTP or the admin. The engine builds a `RunSpec`,
calls `Executor.start()` (returns once the container/process exists), then blocks in
`Execution.wait_for_outcome()` in a worker thread while the execution streams its log and
metrics files, records the outcome, and only then calls `Execution.cleanup()`.
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
    name: str

    @abc.abstractmethod
    def start(self, spec: RunSpec) -> Execution:
        """Start the run and return at once. Raises InfrastructureError."""

    @abc.abstractmethod
    def reattach(self, spec: RunSpec, handle_id: str) -> Execution | None:
        """Re-attach to a run started by an earlier engine process, or None if it is gone.

        If the container/process already exited, the returned Execution's wait() returns its
        outcome at once (appending any log output not yet written).
        """

    @abc.abstractmethod
    def running_handles(self) -> dict[str, str]:
        """run_id → handle_id of every execution of ours that exists (e.g. labelled containers)."""

    @abc.abstractmethod
    def remove_orphan(self, handle_id: str) -> None:
        """Stop and remove an execution that has no run (or a terminal one)."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise InfrastructureError when the executor cannot work (e.g. Docker unreachable)."""
