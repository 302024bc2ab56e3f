"""How a run ended (`Outcome`, what an execution reports) and the one vocabulary for it.

Beside the domain rather than in the engine: executors fill an `Outcome`, the run services
record it, and both word a failure with `classify_exit`, so one ending reads the same wherever
it is shown.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import datetime

MIB = 1024 * 1024

# A run that failed while uv set up its environment because the index's TLS certificate did
# not verify (engine/logstream.py spots uv's words); the cache warm-up says it the same way.
CA_BUNDLE_HINT = (
    "setting up the environment failed: uv could not verify the package index's TLS "
    "certificate ({detail}). Behind a TLS-intercepting proxy, set FASTFLOW_RUNNER_CA_BUNDLE "
    "to a CA bundle file that trusts it (e.g. the host's /etc/ssl/certs/ca-certificates.crt)"
)

_EXIT_MEANINGS = {
    126: "the command could not be executed",
    127: "command not found (is uv on the runner image's PATH?)",
}


@dataclass
class Outcome:
    exit_code: int | None
    timed_out: bool = False
    oom_killed: bool = False
    cancelled: bool = False
    setup_duration: float | None = None  # seconds from start until user code begins
    uv_version: str = ""
    peak_memory_bytes: int | None = None
    error: str = ""  # infrastructure or classification message for the run's error_message
    # When the process really exited (container State.FinishedAt, the local process's exit),
    # recorded as the run's finished_at even if recording happens much later (a DB outage).
    finished_at: datetime | None = None
    log_loss: str = ""  # what of the output could not be written (a full log disk), or ""
    route: str | None = None  # the text of $FASTFLOW_ROUTE_FILE (unchecked); None: not written

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.oom_killed or self.cancelled)


def format_bytes(value: float) -> str:
    """Sizes in run messages and log notes: always MiB, so notes of one run compare at a glance."""
    return f"{value / MIB:.1f} MiB"


def classify_exit(
    outcome: Outcome, *, timeout: float | None = None, mem_limit: int | None = None
) -> str:
    """Empty for a success, else the reason shown as the run's error. `timeout` (seconds) and
    `mem_limit` (bytes) are the run's limits, named in the reason when known."""
    if outcome.succeeded:
        return ""
    if outcome.cancelled:
        return "cancelled"
    if outcome.timed_out:
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    if outcome.oom_killed:
        if mem_limit:
            return f"out of memory: exceeded the {format_bytes(mem_limit)} memory limit"
        return "out of memory"
    code = outcome.exit_code
    if code is None:
        return "ended without an exit code"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"pipeline killed by signal {name}"
    if code in _EXIT_MEANINGS:
        return f"exit code {code}: {_EXIT_MEANINGS[code]}"
    return f"pipeline exited with code {code}"


def outcome_message(
    outcome: Outcome, *, timeout: float | None = None, mem_limit: int | None = None
) -> str:
    """The run's recorded error: how it ended (`classify_exit`), and what of its log was lost
    (a run can succeed with output lost to a full disk: the record says so)."""
    parts = [classify_exit(outcome, timeout=timeout, mem_limit=mem_limit), outcome.log_loss]
    return "; ".join(part for part in parts if part)
