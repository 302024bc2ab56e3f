"""Checks discovery runs on a parsed pipeline.json beyond its syntax.

- Time warnings: a schedule window that has already ended, a `run_once_at` in the past. Valid
  configuration that does nothing any more, so a warning (the pipeline still runs on demand);
  they depend on the moment of the sync, which is why they live here and not in the parser.
- Registered checks: problems another app can detect but this one must not know how to (the
  layer contract keeps `pipelines_app` independent of `secrets_app`). `runs_app` registers the
  `encrypted_env` decryption check at start-up (`RunsAppConfig.ready`); each check returns
  errors, which make the pipeline broken before any run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pipelines_app.spec import PipelineSpec

# (spec, source file label) -> error messages "<file>: key '<key>': <reason>"
SpecCheck = Callable[[PipelineSpec, str], list[str]]

_checks: list[SpecCheck] = []


def register_spec_check(check: SpecCheck) -> None:
    """Add a check run on every parsed pipeline at discovery (idempotent)."""
    if check not in _checks:
        _checks.append(check)


def spec_check_errors(spec: PipelineSpec, source: str) -> list[str]:
    errors: list[str] = []
    for check in _checks:
        errors.extend(check(spec, source))
    return errors


def _moment(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def spec_time_warnings(spec: PipelineSpec, source: str, *, now: datetime) -> list[str]:
    """Warnings for schedule windows that have ended and a `run_once_at` that has passed."""
    warnings: list[str] = []
    windows = [("", spec.schedule_end, bool(spec.schedule_cron or spec.schedule_interval_seconds))]
    windows += [
        (f"schedules[{index}].", rc.schedule_end, rc.is_scheduled)
        for index, rc in enumerate(spec.run_configs)
    ]
    for prefix, end, scheduled in windows:
        if scheduled and end is not None and end <= now:
            warnings.append(
                f"{source}: key '{prefix}schedule_end': the schedule window ended at "
                f"{_moment(end)}, so this schedule never fires again (move schedule_end or "
                "remove the schedule)"
            )
    if spec.run_once_at is not None and spec.run_once_at <= now:
        warnings.append(
            f"{source}: key 'run_once_at': {_moment(spec.run_once_at)} is in the past, so no "
            "further run happens (set a future time or remove the key)"
        )
    return warnings
