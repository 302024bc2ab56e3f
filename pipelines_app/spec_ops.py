"""The operations keys of pipeline.json: `notifications` and `retention`.

Both may appear at the pipeline level; `notifications` also in a run configuration
(`schedules[]`), where every key it gives replaces the pipeline's. The event names are the
vocabulary users write, so they live here, beside the file format; `notifications_app` uses
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from pipelines_app.errors import SpecError
from pipelines_app.spec_values import as_bool, as_int, as_number, json_type

# Event → what it means. Order is the order the admin lists them in.
NOTIFY_EVENTS: dict[str, str] = {
    "run_failed": "a run failed for good (no retry left or none configured)",
    "retries_exhausted": "a run failed after using all its retries",
    "run_recovered": "the first success after a failure that was notified",
    "run_succeeded": "every successful run (off unless asked for)",
    "schedule_late": "a schedule tick was missed or fired later than the threshold",
    "long_running": "a run is running longer than expected",
    "memory_soft_limit": "a run exceeded its memory soft limit",
    "engine_silent": "an engine stopped heartbeating (crashed, hung or cut off)",
    "cache_warmup_failed": "the dependency cache warm-up of a pipeline failed",
    "daemon_crash_loop": "a daemon pipeline keeps crashing soon after it starts; restarts back off",
    "test": "a test message sent from the admin",
}
# `retries_exhausted` is a kind of `run_failed`: subscribing to `run_failed` includes it.
EVENT_PARENT = {"retries_exhausted": "run_failed"}
DEFAULT_EVENTS: tuple[str, ...] = tuple(
    e for e in NOTIFY_EVENTS if e not in {"run_succeeded", "test"}
)
SUBSCRIBABLE_EVENTS: tuple[str, ...] = tuple(e for e in NOTIFY_EVENTS if e != "test")

NOTIFICATION_KEYS = (
    "events",
    "targets",
    "global_targets",
    "expected_duration",
    "long_running_factor",
)
RETENTION_KEYS = ("keep_runs", "days", "failed_days")


class _Reader(Protocol):  # the collector in spec.py
    def error(self, key: str, reason: str) -> None: ...
    def warn(self, key: str, reason: str) -> None: ...
    def check_unknown(
        self, data: Mapping[str, Any], known: tuple[str, ...], prefix: str
    ) -> None: ...
    def take(self, data: Mapping[str, Any], key: str, convert: Any, default: Any = None, *,
             prefix: str = "") -> Any: ...  # fmt: skip


def event_matches(event: str, subscribed: tuple[str, ...] | list[str]) -> bool:
    """Whether a list of subscribed events covers `event` (directly or through its parent)."""
    return event in subscribed or EVENT_PARENT.get(event, "") in subscribed


@dataclass(frozen=True)
class NotifyTarget:
    """A pipeline's own target: a global target by name, or a secret holding an Apprise URL."""

    channel: str = ""
    secret: str = ""

    @property
    def label(self) -> str:
        return f"secret:{self.secret}" if self.secret else self.channel

    def to_json(self) -> str | dict[str, str]:
        return {"secret": self.secret} if self.secret else self.channel


@dataclass(frozen=True)
class NotificationSettings:
    """`notifications` of one level; None = not set here (inherit / use the default)."""

    events: tuple[str, ...] | None = None
    targets: tuple[NotifyTarget, ...] | None = None
    global_targets: bool | None = None
    expected_duration: int | None = None  # seconds
    long_running_factor: float | None = None  # × the median of recent successful runs

    def over(self, base: NotificationSettings) -> NotificationSettings:
        """These settings with every unset key taken from `base`."""
        values = {
            f.name: getattr(base, f.name)
            if getattr(self, f.name) is None
            else getattr(self, f.name)
            for f in fields(self)
        }
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any] | None:
        data: dict[str, Any] = {}
        for name in NOTIFICATION_KEYS:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "targets":
                value = [t.to_json() for t in value]
            elif name == "events":
                value = list(value)
            data[name] = value
        return data or None


@dataclass(frozen=True)
class RetentionSettings:
    """`retention` of a pipeline; None = the global default; 0 = no limit."""

    keep_runs: int | None = None
    days: int | None = None
    failed_days: int | None = None

    def to_dict(self) -> dict[str, Any] | None:
        data = {name: getattr(self, name) for name in RETENTION_KEYS}
        data = {k: v for k, v in data.items() if v is not None}
        return data or None


def _events(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SpecError(f"expected an array of event names, got {json_type(value)}")
    events: list[str] = []
    for index, item in enumerate(value):
        if item not in SUBSCRIBABLE_EVENTS:
            raise SpecError(
                f"item {index}: unknown event {item!r} (known: {', '.join(SUBSCRIBABLE_EVENTS)})"
            )
        if item not in events:
            events.append(item)
    return tuple(events)


def _target(index: int, item: Any) -> NotifyTarget:
    where = f"item {index}"
    if isinstance(item, str):
        name = item.strip()
        if "://" in name:
            # Apprise URLs carry credentials and pipeline.json lives in git.
            raise SpecError(
                f"{where}: an Apprise URL carries credentials and does not belong in "
                'pipeline.json; store it as a secret and write {"secret": "NAME"}, or '
                "add a global target in the admin and write its name"
            )
        if not name:
            raise SpecError(f"{where}: the name of a global target must not be empty")
        return NotifyTarget(channel=name)
    if isinstance(item, Mapping):
        unknown = set(item) - {"secret"}
        secret = item.get("secret")
        if unknown or not isinstance(secret, str) or not secret.strip() or "=" in secret:
            raise SpecError(
                f'{where}: expected a global target\'s name or {{"secret": "NAME"}} '
                "naming a secret that holds an Apprise URL"
            )
        return NotifyTarget(secret=secret.strip())
    raise SpecError(f"{where}: expected a string or an object, got {json_type(item)}")


def _targets(value: Any) -> tuple[NotifyTarget, ...]:
    if not isinstance(value, list):
        raise SpecError(f"expected an array of targets, got {json_type(value)}")
    targets: list[NotifyTarget] = []
    for index, item in enumerate(value):
        target = _target(index, item)
        if target not in targets:
            targets.append(target)
    return tuple(targets)


def parse_notifications(r: _Reader, value: Any, label: str) -> NotificationSettings | None:
    if not isinstance(value, Mapping):
        r.error(label, f"expected an object, got {json_type(value)}")
        return None
    prefix = label + "."
    r.check_unknown(value, NOTIFICATION_KEYS, prefix)
    settings = NotificationSettings(
        events=r.take(value, "events", _events, prefix=prefix),
        targets=r.take(value, "targets", _targets, prefix=prefix),
        global_targets=r.take(value, "global_targets", as_bool, prefix=prefix),
        expected_duration=r.take(
            value, "expected_duration", lambda v: as_int(v, minimum=1), prefix=prefix
        ),
        long_running_factor=r.take(
            value,
            "long_running_factor",
            lambda v: as_number(v, minimum=1, allow_equal=False),
            prefix=prefix,
        ),
    )
    if settings.global_targets is False and settings.targets == ():
        r.warn(prefix + "targets", "is empty and global_targets is false: nothing is notified")
    return settings


def parse_retention(r: _Reader, value: Any, label: str) -> RetentionSettings | None:
    if not isinstance(value, Mapping):
        r.error(label, f"expected an object, got {json_type(value)}")
        return None
    prefix = label + "."
    r.check_unknown(value, RETENTION_KEYS, prefix)
    return RetentionSettings(
        keep_runs=r.take(value, "keep_runs", as_int, prefix=prefix),
        days=r.take(value, "days", as_int, prefix=prefix),
        failed_days=r.take(value, "failed_days", as_int, prefix=prefix),
    )
