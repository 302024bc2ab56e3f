"""The parsed pipeline.json: one immutable, typed object per pipeline.

`parse_pipeline_json()` validates every key and either returns a `PipelineSpec` (plus warnings
for unknown keys) or raises `SpecError` listing every problem as
``<file>: key '<key>': <reason>``. Nothing falls back to defaults silently: the original
Fast-Flow ran a pipeline with default settings when its JSON was broken.

Decisions where the original was loose (all errors, so the pipeline cannot run until fixed):
- `schedule_cron` and `schedule_interval_seconds` together (the original let cron win);
- top-level `schedule_cron`/`schedule_interval_seconds` together with `schedules` (the
  original ignored the top level);
- non-string `default_env` values (the original dropped them), an unknown `type` or
  `retry_strategy.type` (the original used defaults), an empty `custom_schedule`;
- `downstream_triggers[].on_route` with `on_success`/`on_failure` (ignored with a warning: a
  route trigger fires on success with a matching label, as in the original's database triggers;
  the original's pipeline.json loader dropped `on_route` silently);
- a `webhook_key` used twice within the pipeline (pipeline level and run configurations).
- a `default_env`/`encrypted_env` name or a secret that is a reserved variable
  (`pipelines_app.env_names`: `PYTHONPATH`, `LD_PRELOAD`, `UV_*`, `FASTFLOW_*`, ...).
A run configuration without a schedule is allowed: it is still selectable for manual runs,
webhooks and downstream triggers (the original dropped it).
"""

from __future__ import annotations

import difflib
import hmac
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

from pipelines_app.cron import cron_trigger, next_fire_times, validate_cron
from pipelines_app.errors import SpecError
from pipelines_app.spec_ops import (
    NotificationSettings,
    RetentionSettings,
    parse_notifications,
    parse_retention,
)
from pipelines_app.spec_values import (
    as_bool,
    as_cron,
    as_datetime,
    as_env,
    as_int,
    as_number,
    as_python_version,
    as_restart_interval,
    as_route_label,
    as_safe_name,
    as_secret_names,
    as_str,
    as_str_list,
    as_webhook_key,
    json_type,
    parse_memory,
    to_json_value,
)

__all__ = [
    "CellConfig",
    "DownstreamTrigger",
    "EffectiveConfig",
    "ParseResult",
    "PipelineSpec",
    "RetryStrategy",
    "RunConfig",
    "SpecError",
    "cron_trigger",
    "next_fire_times",
    "parse_memory",
    "ResourceMaxima",
    "parse_pipeline_json",
    "validate_cron",
]

T = TypeVar("T")

SUPPORTED_TYPES = ("script", "notebook")
# Added by the engine to a notebook pipeline's environment (`uv run --with`, and the cache
# warm-up installs them too), so a notebook needs nothing in requirements.txt to run. A
# pipeline that lists them itself (the original required it) gets one resolution of both.
NOTEBOOK_REQUIREMENTS = ("nbclient>=0.10,<1", "ipykernel>=6.29,<8")
CELL_KEYS = ("retries", "delay_seconds")
RETRY_TYPES = {
    "fixed_delay": ("delay",),
    "exponential_backoff": ("initial_delay", "multiplier", "max_delay"),
    "custom_schedule": ("delays",),
}
# Docker refuses memory limits below 6 MiB; say so at discovery instead of at run time.
MIN_MEM_HARD_LIMIT = 6 * 1024 * 1024
SHORT_WEBHOOK_KEY = 16

LIMIT_KEYS = (
    "cpu_hard_limit",
    "mem_hard_limit",
    "cpu_soft_limit",
    "mem_soft_limit",
    "pids_limit",
    "tmp_size",
)
# The limits an installation caps (`ResourceMaxima`): a pipeline may ask for up to the maximum.
CAPPED_KEYS = ("cpu_hard_limit", "mem_hard_limit", "pids_limit", "tmp_size")
MIN_PIDS_LIMIT = 16
SCHEDULE_KEYS = ("schedule_cron", "schedule_interval_seconds", "schedule_start", "schedule_end")
OVERRIDE_KEYS = (
    *LIMIT_KEYS,
    "timeout",
    "retry_attempts",
    "retry_strategy",
    "default_env",
    "encrypted_env",
    "webhook_key",
)
RUN_CONFIG_KEYS = ("id", "enabled", *SCHEDULE_KEYS, *OVERRIDE_KEYS, "notifications")
TRIGGER_KEYS = ("pipeline", "on_success", "on_failure", "run_config_id", "on_route")
PIPELINE_KEYS = (
    "description",
    "tags",
    "enabled",
    "type",
    "python_version",
    *OVERRIDE_KEYS,
    "secrets",
    "webhook_secret_env",
    *SCHEDULE_KEYS,
    "run_once_at",
    "max_instances",
    "downstream_triggers",
    "schedules",
    "restart_on_crash",
    "restart_cooldown",
    "restart_interval",
    "notifications",
    "retention",
    "cells",
)
# The one key whose PipelineSpec attribute has another name.
_ATTRIBUTE_FOR_KEY = {"schedules": "run_configs"}


def _frozen_env(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


def _empty_env() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ResourceMaxima:
    """The most a pipeline.json may ask for, per capped key: (maximum, the setting that sets
    it). Discovery passes the installation's; parsing a stored spec passes none (a lowered
    maximum makes the next discovery report the pipeline, not an unreadable row)."""

    limits: Mapping[str, tuple[float, str]] = field(default_factory=dict)

    def check(self, key: str, value: float | None) -> str:
        """ "" when `value` is within the maximum for `key`, else the reason."""
        if value is None or key not in self.limits:
            return ""
        maximum, setting = self.limits[key]
        if value <= maximum:
            return ""
        shown = _limit_text(key, value), _limit_text(key, maximum)
        return f"{shown[0]} is above the maximum of this installation, {shown[1]} ({setting})"


def _limit_text(key: str, value: float) -> str:
    if key in ("mem_hard_limit", "tmp_size"):
        return f"{value / 1024**2:.1f} MiB" if value < 1024**3 else f"{value / 1024**3:.1f} GiB"
    if key == "cpu_hard_limit":
        return f"{value:g} cores"
    return f"{value:g}"


@dataclass(frozen=True)
class RetryStrategy:
    type: str = "fixed_delay"
    delay: float = 60
    initial_delay: float = 60
    multiplier: float = 2.0
    max_delay: float = 3600
    delays: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "delays", tuple(self.delays))

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if self.type == "exponential_backoff":
            try:
                value = float(self.initial_delay) * float(self.multiplier) ** (attempt - 1)
            except OverflowError:
                return self.max_delay
            return min(value, self.max_delay) if math.isfinite(value) else self.max_delay
        if self.type == "custom_schedule" and self.delays:
            return self.delays[min(attempt, len(self.delays)) - 1]
        return self.delay

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        for name in RETRY_TYPES.get(self.type, ()):
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        return data


@dataclass(frozen=True)
class DownstreamTrigger:
    pipeline: str
    on_success: bool = True
    on_failure: bool = False
    run_config_id: str | None = None
    on_route: str | None = None  # set: fires only on success with exactly this route label

    def fires_for(self, *, succeeded: bool, route: str = "") -> bool:
        if self.on_route is not None:
            return succeeded and route == self.on_route
        return self.on_success if succeeded else self.on_failure


@dataclass(frozen=True)
class CellConfig:
    """Per code cell of a notebook pipeline: extra attempts after a failure and the pause
    between them (the original's defaults)."""

    retries: int = 0
    delay_seconds: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"retries": self.retries, "delay_seconds": self.delay_seconds}


@dataclass(frozen=True)
class RunConfig:
    """One entry of `schedules`: a run configuration; `id` is the run_config_id."""

    id: str
    schedule_cron: str | None = None
    schedule_interval_seconds: int | None = None
    schedule_start: datetime | None = None
    schedule_end: datetime | None = None
    enabled: bool = True
    default_env: Mapping[str, str] = field(default_factory=_empty_env)
    encrypted_env: Mapping[str, str] = field(default_factory=_empty_env)
    cpu_hard_limit: float | None = None
    mem_hard_limit: int | None = None
    cpu_soft_limit: float | None = None
    mem_soft_limit: int | None = None
    pids_limit: int | None = None
    tmp_size: int | None = None  # bytes of the run's /tmp
    timeout: int | None = None  # None = inherit the pipeline's; 0 = no limit
    retry_attempts: int | None = None
    retry_strategy: RetryStrategy | None = None
    webhook_key: str | None = None
    notifications: NotificationSettings | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_env", _frozen_env(self.default_env))
        object.__setattr__(self, "encrypted_env", _frozen_env(self.encrypted_env))

    @property
    def is_scheduled(self) -> bool:
        return bool(self.schedule_cron or self.schedule_interval_seconds)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in RUN_CONFIG_KEYS}
        data["retry_strategy"] = self.retry_strategy.to_dict() if self.retry_strategy else None
        data["notifications"] = self.notifications.to_dict() if self.notifications else None
        return to_json_value(data)


@dataclass(frozen=True)
class EffectiveConfig:
    """The pipeline level merged with one run configuration's overrides."""

    cpu_hard_limit: float | None
    mem_hard_limit: int | None
    cpu_soft_limit: float | None
    mem_soft_limit: int | None
    pids_limit: int | None
    tmp_size: int | None
    timeout: int | None  # None = no limit (0 in the file means no limit)
    retry_attempts: int
    retry_strategy: RetryStrategy
    default_env: dict[str, str]
    encrypted_env: dict[str, str]  # still ciphertext


@dataclass(frozen=True)
class PipelineSpec:
    description: str = ""
    tags: tuple[str, ...] = ()
    enabled: bool = True
    type: str = "script"
    python_version: str | None = None
    cpu_hard_limit: float | None = None
    mem_hard_limit: int | None = None
    cpu_soft_limit: float | None = None
    mem_soft_limit: int | None = None
    pids_limit: int | None = None
    tmp_size: int | None = None  # bytes of the run's /tmp
    timeout: int | None = None  # None or 0 = no limit
    retry_attempts: int = 0
    retry_strategy: RetryStrategy = field(default_factory=RetryStrategy)
    default_env: Mapping[str, str] = field(default_factory=_empty_env)
    encrypted_env: Mapping[str, str] = field(default_factory=_empty_env)
    secrets: tuple[str, ...] = ()
    webhook_key: str | None = None
    webhook_secret_env: str | None = None
    schedule_cron: str | None = None
    schedule_interval_seconds: int | None = None
    schedule_start: datetime | None = None
    schedule_end: datetime | None = None
    run_once_at: datetime | None = None
    max_instances: int | None = None
    downstream_triggers: tuple[DownstreamTrigger, ...] = ()
    # pipeline.json's `schedules` key (the original's name): run configurations, scheduled or not.
    run_configs: tuple[RunConfig, ...] = ()
    restart_on_crash: bool = False
    restart_cooldown: int = 60
    restart_interval: str | None = None
    notifications: NotificationSettings | None = None
    retention: RetentionSettings | None = None
    cells: tuple[CellConfig, ...] = ()  # notebook pipelines: one entry per code cell

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_env", _frozen_env(self.default_env))
        object.__setattr__(self, "encrypted_env", _frozen_env(self.encrypted_env))
        for name in ("tags", "secrets", "downstream_triggers", "run_configs", "cells"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def is_notebook(self) -> bool:
        return self.type == "notebook"

    @property
    def entry_file(self) -> str:
        return "main.ipynb" if self.is_notebook else "main.py"

    @property
    def extra_requirements(self) -> tuple[str, ...]:
        """Packages the engine adds to the run's environment (the notebook runner's)."""
        return NOTEBOOK_REQUIREMENTS if self.is_notebook else ()

    @property
    def schedule_count(self) -> int:
        """How many triggers fire this pipeline on their own (schedules and run_once_at)."""
        count = sum(1 for rc in self.run_configs if rc.is_scheduled)
        if self.schedule_cron or self.schedule_interval_seconds:
            count += 1
        return count + (1 if self.run_once_at else 0)

    def run_config(self, run_config_id: str) -> RunConfig | None:
        return next((rc for rc in self.run_configs if rc.id == run_config_id), None)

    def effective(self, run_config_id: str | None = None) -> EffectiveConfig:
        """Raises KeyError for an unknown run configuration (the original fell back)."""
        rc = None
        if run_config_id:
            rc = self.run_config(run_config_id)
            if rc is None:
                raise KeyError(run_config_id)

        def pick(name: str) -> Any:
            value = getattr(rc, name) if rc is not None else None
            return getattr(self, name) if value is None else value

        return EffectiveConfig(
            cpu_hard_limit=pick("cpu_hard_limit"),
            mem_hard_limit=pick("mem_hard_limit"),
            cpu_soft_limit=pick("cpu_soft_limit"),
            mem_soft_limit=pick("mem_soft_limit"),
            pids_limit=pick("pids_limit"),
            tmp_size=pick("tmp_size"),
            timeout=pick("timeout") or None,
            retry_attempts=pick("retry_attempts"),
            retry_strategy=pick("retry_strategy"),
            default_env={**self.default_env, **(rc.default_env if rc else {})},
            encrypted_env={**self.encrypted_env, **(rc.encrypted_env if rc else {})},
        )

    def notifications_for(self, run_config_id: str | None = None) -> NotificationSettings:
        """The pipeline's `notifications` with a run configuration's keys over them (an unknown
        run configuration gives the pipeline's)."""
        base = self.notifications or NotificationSettings()
        rc = self.run_config(run_config_id) if run_config_id else None
        if rc is None or rc.notifications is None:
            return base
        return rc.notifications.over(base)

    def webhook_target(self, key: str) -> tuple[bool, str | None]:
        """(matched, run_config_id or None). Every key is compared, in constant time."""
        if not key:
            return False, None
        supplied = key.encode()
        result: tuple[bool, str | None] = (False, None)
        candidates = [
            (self.webhook_key, None),
            *((rc.webhook_key, rc.id) for rc in self.run_configs),
        ]
        for candidate, run_config_id in candidates:
            if candidate and hmac.compare_digest(candidate.encode(), supplied) and not result[0]:
                result = (True, run_config_id)
        return result

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, _ATTRIBUTE_FOR_KEY.get(name, name)) for name in PIPELINE_KEYS}
        data["retry_strategy"] = self.retry_strategy.to_dict()
        data["downstream_triggers"] = [
            {name: getattr(t, name) for name in TRIGGER_KEYS} for t in self.downstream_triggers
        ]
        data["schedules"] = [rc.to_dict() for rc in self.run_configs]
        data["notifications"] = self.notifications.to_dict() if self.notifications else None
        data["retention"] = self.retention.to_dict() if self.retention else None
        data["cells"] = [cell.to_dict() for cell in self.cells]
        return to_json_value(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PipelineSpec:
        """Inverse of to_dict; {} gives all defaults. Raises SpecError on invalid data."""
        return parse_pipeline_json(dict(data or {}), source="metadata").spec


@dataclass(frozen=True)
class ParseResult:
    spec: PipelineSpec
    warnings: list[str]


class _Reader:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, source: str, maxima: ResourceMaxima | None = None) -> None:
        self.source = source
        self.maxima = maxima or ResourceMaxima()
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, key: str, reason: str) -> None:
        self.errors.append(f"{self.source}: key '{key}': {reason}")

    def warn(self, key: str, reason: str) -> None:
        self.warnings.append(f"{self.source}: key '{key}': {reason}")

    def take(
        self,
        data: Mapping[str, Any],
        key: str,
        convert: Callable[[Any], T],
        default: Any = None,
        *,
        prefix: str = "",
    ) -> Any:
        value = data.get(key)
        if value is None:
            return default
        try:
            return convert(value)
        except SpecError as exc:
            self.error(prefix + key, str(exc))
            return default

    def check_unknown(self, data: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in data:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.warn(prefix + key, f"unknown key, ignored{hint}")


def _limits(r: _Reader, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    limits = {
        "cpu_hard_limit": r.take(
            data, "cpu_hard_limit", lambda v: as_number(v, allow_equal=False), prefix=prefix
        ),
        "mem_hard_limit": r.take(data, "mem_hard_limit", parse_memory, prefix=prefix),
        "cpu_soft_limit": r.take(
            data, "cpu_soft_limit", lambda v: as_number(v, allow_equal=False), prefix=prefix
        ),
        "mem_soft_limit": r.take(data, "mem_soft_limit", parse_memory, prefix=prefix),
        "pids_limit": r.take(
            data, "pids_limit", lambda v: as_int(v, minimum=MIN_PIDS_LIMIT), prefix=prefix
        ),
        "tmp_size": r.take(data, "tmp_size", parse_memory, prefix=prefix),
    }
    for key in CAPPED_KEYS:
        if reason := r.maxima.check(key, limits[key]):
            r.error(prefix + key, reason)
    hard_mem = limits["mem_hard_limit"]
    if hard_mem is not None and hard_mem < MIN_MEM_HARD_LIMIT:
        r.error(
            prefix + "mem_hard_limit", f"must be at least 6m (Docker's minimum), got {hard_mem}"
        )
    for kind in ("cpu", "mem"):
        soft, hard = limits[f"{kind}_soft_limit"], limits[f"{kind}_hard_limit"]
        if soft is not None and hard is not None and soft > hard:
            r.warn(prefix + f"{kind}_soft_limit", f"is above {kind}_hard_limit, so it never fires")
    return limits


def _retry_strategy(r: _Reader, value: Any, label: str) -> RetryStrategy | None:
    if not isinstance(value, Mapping):
        r.error(label, f"expected an object, got {json_type(value)}")
        return None
    kind = value.get("type", "fixed_delay")
    if kind not in RETRY_TYPES:
        r.error(f"{label}.type", f"expected one of {', '.join(RETRY_TYPES)}, got {kind!r}")
        return None
    prefix = f"{label}."
    r.check_unknown(value, ("type", *(k for keys in RETRY_TYPES.values() for k in keys)), prefix)
    for key in value:
        if (
            key != "type"
            and key not in RETRY_TYPES[kind]
            and any(key in keys for keys in RETRY_TYPES.values())
        ):
            r.warn(prefix + key, f"does not apply to {kind!r}, ignored")
    values: dict[str, Any] = {"type": kind}
    if kind == "fixed_delay":
        values["delay"] = r.take(value, "delay", as_number, 60, prefix=prefix)
    elif kind == "exponential_backoff":
        values["initial_delay"] = r.take(value, "initial_delay", as_number, 60, prefix=prefix)
        values["multiplier"] = r.take(
            value, "multiplier", lambda v: as_number(v, minimum=1), 2.0, prefix=prefix
        )
        values["max_delay"] = r.take(value, "max_delay", as_number, 3600, prefix=prefix)
    else:
        delays = r.take(value, "delays", _delays, None, prefix=prefix)
        if delays is None and "delays" not in value:
            r.error(prefix + "delays", "custom_schedule needs a non-empty array of seconds")
        values["delays"] = delays or ()
    return RetryStrategy(**values)


def _delays(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError("expected a non-empty array of seconds")
    delays = []
    for index, item in enumerate(value):
        try:
            delays.append(as_number(item))
        except SpecError as exc:
            raise SpecError(f"item {index}: {exc}") from None
    return tuple(delays)


def _schedule(r: _Reader, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    schedule = {
        "schedule_cron": r.take(data, "schedule_cron", _optional_cron, prefix=prefix),
        "schedule_interval_seconds": r.take(
            data, "schedule_interval_seconds", lambda v: as_int(v, minimum=1), prefix=prefix
        ),
        "schedule_start": r.take(data, "schedule_start", as_datetime, prefix=prefix),
        "schedule_end": r.take(
            data, "schedule_end", lambda v: as_datetime(v, end_of_day=True), prefix=prefix
        ),
    }
    if schedule["schedule_cron"] and schedule["schedule_interval_seconds"]:
        r.error(
            prefix + "schedule_interval_seconds",
            "set either schedule_cron or schedule_interval_seconds, not both",
        )
    start, end = schedule["schedule_start"], schedule["schedule_end"]
    if start and end and end <= start:
        r.error(prefix + "schedule_end", "must be after schedule_start")
    # Only warn when no trigger was written at all: an invalid one is already an error.
    has_trigger = any(data.get(k) not in (None, "") for k in SCHEDULE_KEYS[:2])
    for key in ("schedule_start", "schedule_end"):
        if schedule[key] and not has_trigger:
            r.warn(prefix + key, "has no effect without schedule_cron or schedule_interval_seconds")
    return schedule


def _optional_cron(value: Any) -> str | None:
    return None if value == "" else as_cron(value)


def _overrides(r: _Reader, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    values = _limits(r, data, prefix)
    values["timeout"] = r.take(data, "timeout", as_int, prefix=prefix)
    values["retry_attempts"] = r.take(data, "retry_attempts", as_int, prefix=prefix)
    values["retry_strategy"] = (
        _retry_strategy(r, data["retry_strategy"], prefix + "retry_strategy")
        if data.get("retry_strategy") is not None
        else None
    )
    values["default_env"] = r.take(data, "default_env", as_env, {}, prefix=prefix)
    values["encrypted_env"] = r.take(data, "encrypted_env", as_env, {}, prefix=prefix)
    values["webhook_key"] = r.take(data, "webhook_key", as_webhook_key, prefix=prefix)
    return values


def _run_configs(r: _Reader, value: Any) -> tuple[RunConfig, ...]:
    if not isinstance(value, list):
        r.error("schedules", f"expected an array of objects, got {json_type(value)}")
        return ()
    configs: list[RunConfig] = []
    for index, item in enumerate(value):
        label = f"schedules[{index}]"
        if not isinstance(item, Mapping):
            r.error(label, f"expected an object, got {json_type(item)}")
            continue
        prefix = label + "."
        r.check_unknown(item, RUN_CONFIG_KEYS, prefix)
        if item.get("id") in (None, ""):
            r.error(prefix + "id", "is required (it is the run_config_id)")
            continue
        config_id = r.take(item, "id", as_safe_name, prefix=prefix)
        if config_id is None:
            continue
        if any(c.id == config_id for c in configs):
            r.error(prefix + "id", f"{config_id!r} is used by an earlier entry")
            continue
        configs.append(
            RunConfig(
                id=config_id,
                enabled=r.take(item, "enabled", as_bool, True, prefix=prefix),
                **_schedule(r, item, prefix),
                **_overrides(r, item, prefix),
                notifications=_ops(r, item, "notifications", prefix, parse_notifications),
            )
        )
    return tuple(configs)


def _downstream(r: _Reader, value: Any) -> tuple[DownstreamTrigger, ...]:
    if not isinstance(value, list):
        r.error("downstream_triggers", f"expected an array of objects, got {json_type(value)}")
        return ()
    triggers: list[DownstreamTrigger] = []
    for index, item in enumerate(value):
        label = f"downstream_triggers[{index}]"
        trigger = _one_downstream(r, item, label)
        if trigger is None:
            continue
        same = (trigger.pipeline, trigger.run_config_id, trigger.on_route)
        if any((t.pipeline, t.run_config_id, t.on_route) == same for t in triggers):
            r.error(label, f"duplicates an earlier trigger of {trigger.pipeline!r}")
            continue
        triggers.append(trigger)
    return tuple(triggers)


def _one_downstream(r: _Reader, item: Any, label: str) -> DownstreamTrigger | None:
    """One entry of `downstream_triggers`; None when it is unusable (the error is recorded)."""
    if not isinstance(item, Mapping):
        r.error(label, f"expected an object, got {json_type(item)}")
        return None
    prefix = label + "."
    r.check_unknown(item, TRIGGER_KEYS, prefix)
    if item.get("pipeline") in (None, ""):
        r.error(prefix + "pipeline", "is required (the downstream pipeline's name)")
        return None
    trigger = DownstreamTrigger(
        pipeline=r.take(item, "pipeline", as_safe_name, "", prefix=prefix),
        on_success=r.take(item, "on_success", as_bool, True, prefix=prefix),
        on_failure=r.take(item, "on_failure", as_bool, False, prefix=prefix),
        run_config_id=r.take(item, "run_config_id", as_str, prefix=prefix) or None,
        on_route=r.take(item, "on_route", as_route_label, prefix=prefix),
    )
    if not trigger.pipeline:
        return None
    if trigger.on_route is not None:
        for key in ("on_success", "on_failure"):
            if key in item:
                r.warn(
                    prefix + key,
                    "ignored with on_route: a route trigger fires when the run succeeded "
                    "and wrote that route",
                )
    elif not (trigger.on_success or trigger.on_failure):
        r.warn(label, "on_success and on_failure are both false, so it never fires")
    return trigger


def _cells(r: _Reader, value: Any) -> tuple[CellConfig, ...]:
    if not isinstance(value, list):
        r.error("cells", f"expected an array (one object per code cell), got {json_type(value)}")
        return ()
    cells: list[CellConfig] = []
    for index, item in enumerate(value):
        prefix = f"cells[{index}]."
        if not isinstance(item, Mapping):
            r.error(f"cells[{index}]", f"expected an object, got {json_type(item)}")
            cells.append(CellConfig())
            continue
        r.check_unknown(item, CELL_KEYS, prefix)
        cells.append(
            CellConfig(
                retries=r.take(item, "retries", as_int, 0, prefix=prefix),
                delay_seconds=r.take(item, "delay_seconds", as_number, 1.0, prefix=prefix),
            )
        )
    return tuple(cells)


def _check_webhook_keys(r: _Reader, spec_key: str | None, configs: tuple[RunConfig, ...]) -> None:
    seen: dict[str, str] = {}
    labelled = [("webhook_key", spec_key)]
    labelled += [(f"schedules[{i}].webhook_key", rc.webhook_key) for i, rc in enumerate(configs)]
    for label, key in labelled:
        if not key:
            continue
        if key in seen:
            # Never echo the key itself: it is a credential.
            r.error(label, f"duplicates the webhook_key of '{seen[key]}' (keys must be unique)")
            continue
        seen[key] = label
        if len(key) < SHORT_WEBHOOK_KEY:
            r.warn(label, f"is shorter than {SHORT_WEBHOOK_KEY} characters and easy to guess")


def _type(value: Any) -> str:
    text = as_str(value)
    if text not in SUPPORTED_TYPES:
        raise SpecError(f"expected one of {', '.join(map(repr, SUPPORTED_TYPES))}, got {text!r}")
    return text


def parse_pipeline_json(
    data: object, *, source: str, maxima: ResourceMaxima | None = None
) -> ParseResult:
    """Validate a decoded pipeline.json; raises SpecError naming the file, key and reason.
    With `maxima`, resource limits above the installation's maximum are errors too."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a JSON object at the top level, got {json_type(data)}")
    r = _Reader(source, maxima)
    r.check_unknown(data, PIPELINE_KEYS, "")
    run_configs = r.take(data, "schedules", lambda v: _run_configs(r, v), ())
    schedule = _schedule(r, data, "")
    if run_configs and (schedule["schedule_cron"] or schedule["schedule_interval_seconds"]):
        r.error(
            "schedules",
            "cannot be combined with a top-level schedule_cron/schedule_interval_seconds "
            "(move that schedule into a 'schedules' entry)",
        )
    overrides = _overrides(r, data, "")
    overrides["retry_attempts"] = overrides["retry_attempts"] or 0
    overrides["retry_strategy"] = overrides["retry_strategy"] or RetryStrategy()
    _check_webhook_keys(r, overrides["webhook_key"], run_configs)
    spec = PipelineSpec(
        description=r.take(data, "description", as_str, ""),
        tags=r.take(data, "tags", as_str_list, ()),
        enabled=r.take(data, "enabled", as_bool, True),
        type=r.take(data, "type", _type, "script"),
        python_version=r.take(data, "python_version", as_python_version),
        secrets=r.take(data, "secrets", as_secret_names, ()),
        webhook_secret_env=r.take(data, "webhook_secret_env", _secret_name),
        run_once_at=r.take(data, "run_once_at", as_datetime),
        max_instances=r.take(data, "max_instances", lambda v: as_int(v, minimum=1)),
        downstream_triggers=r.take(data, "downstream_triggers", lambda v: _downstream(r, v), ()),
        run_configs=run_configs,
        restart_on_crash=r.take(data, "restart_on_crash", as_bool, False),
        restart_cooldown=r.take(data, "restart_cooldown", as_int, 60),
        restart_interval=r.take(data, "restart_interval", as_restart_interval),
        notifications=_ops(r, data, "notifications", "", parse_notifications),
        retention=_ops(r, data, "retention", "", parse_retention),
        cells=r.take(data, "cells", lambda v: _cells(r, v), ()),
        **schedule,
        **overrides,
    )
    if spec.cells and not spec.is_notebook:
        r.warn("cells", 'applies to notebook pipelines only ("type": "notebook"), ignored')
    if r.errors:
        raise SpecError("; ".join(r.errors), r.errors)
    return ParseResult(spec=spec, warnings=r.warnings)


def _ops(
    r: _Reader, data: Mapping[str, Any], key: str, prefix: str, parse: Callable[..., T]
) -> T | None:
    value = data.get(key)
    return None if value is None else parse(r, value, prefix + key)


def _secret_name(value: Any) -> str:
    name = as_str(value).strip()
    if not name or "=" in name or "\x00" in name:
        raise SpecError(f"expected the name of a secret, got {value!r}")
    return name
