"""The words a run's error message uses for how it ended (shared by both executors)."""

from __future__ import annotations

import signal

from runs_app.engine.base import Outcome, RunSpec
from runs_app.engine.metrics import format_bytes

_EXIT_MEANINGS = {
    126: "the command could not be executed",
    127: "command not found (is uv on the runner image's PATH?)",
}


def classify_exit(outcome: Outcome, spec: RunSpec) -> str:
    """Empty for a success, else the reason shown as the run's error."""
    if outcome.cancelled:
        return "cancelled"
    if outcome.timed_out:
        return f"timed out after {spec.timeout:g} s"
    if outcome.oom_killed:
        if spec.mem_hard_limit:
            return f"out of memory: exceeded the {format_bytes(spec.mem_hard_limit)} memory limit"
        return "out of memory"
    code = outcome.exit_code
    if code == 0 or code is None:
        return ""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"pipeline killed by signal {name}"
    if code in _EXIT_MEANINGS:
        return f"exit code {code}: {_EXIT_MEANINGS[code]}"
    return f"pipeline exited with code {code}"
