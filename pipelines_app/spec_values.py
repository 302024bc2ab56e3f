"""Converters for single pipeline.json values. Each raises SpecError(reason) on bad input.

The reason names no file or key: the parser in `spec.py` prefixes both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from pipelines_app.cron import validate_cron
from pipelines_app.env_names import reserved_env_message
from pipelines_app.errors import SpecError

# Pipeline folders, run configuration ids and downstream targets share this rule: the name
# ends up in URLs, file names and container names.
SAFE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Webhook keys travel in the URL path, so only unreserved URL characters are allowed.
WEBHOOK_KEY_RE = re.compile(r"[A-Za-z0-9._~-]{1,255}")
PYTHON_VERSION_RE = re.compile(r"3\.\d{1,2}(\.\d{1,3})?")
MEMORY_RE = re.compile(r"(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?:(?P<unit>[kmgt])i?)?b?", re.I)
MEMORY_UNITS = {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _expected(what: str, value: object) -> SpecError:
    return SpecError(f"expected {what}, got {json_type(value)}")


def is_safe_name(name: str) -> bool:
    return bool(SAFE_NAME_RE.fullmatch(name)) and ".." not in name


def as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def as_str(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    return value


def as_number(value: object, *, minimum: float = 0, allow_equal: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("a number", value)
    if value < minimum or (value == minimum and not allow_equal):
        bound = ">=" if allow_equal else ">"
        raise SpecError(f"must be {bound} {minimum:g}, got {value:g}")
    return float(value)


def as_int(value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("a whole number", value)
    if isinstance(value, float) and not value.is_integer():
        raise SpecError(f"expected a whole number, got {value:g}")
    if value < minimum:
        raise SpecError(f"must be >= {minimum}, got {value:g}")
    return int(value)


def parse_memory(value: object) -> int:
    """Bytes from `512m`, `1g`, `1.5g`, `1024k`, `100` (bytes) or a number; binary units."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _expected("a size such as '512m' or '1.5g'", value)
    if isinstance(value, str):
        match = MEMORY_RE.fullmatch(value.strip())
        if not match:
            raise SpecError(f"invalid size {value!r} (use a number with k, m, g or t, e.g. '512m')")
        amount = float(match["number"]) * MEMORY_UNITS[match["unit"] and match["unit"].lower()]
    else:
        amount = float(value)
    size = round(amount)
    if size <= 0:
        raise SpecError(f"size must be positive, got {value!r}")
    return size


def as_datetime(value: object, *, end_of_day: bool = False) -> datetime:
    """An aware UTC datetime from ISO 8601; a date alone means its start (or its end)."""
    if not isinstance(value, str):
        raise _expected("an ISO 8601 date or datetime string", value)
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(f"invalid ISO 8601 date or datetime {value!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def as_cron(value: object) -> str:
    expr = as_str(value)
    validate_cron(expr)
    return " ".join(expr.split())


def as_env(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _expected("an object of NAME: string", value)
    env: dict[str, str] = {}
    for name, item in value.items():
        if not name or "=" in name or "\x00" in name:
            raise SpecError(f"invalid variable name {name!r}")
        if refused := reserved_env_message(name):
            raise SpecError(refused)
        if not isinstance(item, str):
            raise SpecError(f"value of {name!r} must be a string, got {json_type(item)}")
        if "\x00" in item:
            raise SpecError(f"value of {name!r} contains a NUL character")
        env[name] = item
    return env


def as_str_list(value: object) -> tuple[str, ...]:
    """A list of non-empty strings, stripped and de-duplicated in order."""
    if not isinstance(value, list):
        raise _expected("an array of strings", value)
    items: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"item {index} must be a non-empty string, got {item!r}")
        if item.strip() not in items:
            items.append(item.strip())
    return tuple(items)


def as_secret_names(value: object) -> tuple[str, ...]:
    names = as_str_list(value)
    for name in names:
        if "=" in name or "\x00" in name:
            raise SpecError(f"invalid secret name {name!r}")
        # Secrets become environment variables of the run under their own name.
        if refused := reserved_env_message(name, what="secret"):
            raise SpecError(refused)
    return names


def as_python_version(value: object) -> str:
    text = as_str(value).strip()
    if not PYTHON_VERSION_RE.fullmatch(text):
        raise SpecError(f"expected a Python 3 version such as '3.12', got {value!r}")
    return text


def as_webhook_key(value: object) -> str | None:
    """None when empty (webhooks off), as in the original."""
    text = as_str(value)
    if text == "":
        return None
    if not WEBHOOK_KEY_RE.fullmatch(text):
        raise SpecError(
            "must be at most 255 characters from A-Z, a-z, 0-9 and . _ ~ - (it is part of a URL)"
        )
    return text


def as_safe_name(value: object) -> str:
    text = as_str(value)
    if not is_safe_name(text):
        raise SpecError(
            f"{text!r} is not a valid name (letters, digits, '_', '.', '-'; "
            "starting with a letter or digit; at most 100 characters)"
        )
    return text


def as_restart_interval(value: object) -> str:
    """Whole seconds (as a string) or a 5-field cron expression."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(as_int(value, minimum=1))
    text = as_str(value).strip()
    if text.isdigit():
        return str(as_int(int(text), minimum=1))
    return as_cron(text)


ROUTE_MAX_LENGTH = 128


def as_route_label(value: object) -> str:
    """A route label: `on_route` in pipeline.json and what a run writes to its route file."""
    text = as_str(value)
    if not text or text != text.strip() or not text.isprintable():
        raise SpecError(
            f"expected a route label (printable text without surrounding spaces), got {value!r}"
        )
    if len(text) > ROUTE_MAX_LENGTH:
        raise SpecError(f"is longer than {ROUTE_MAX_LENGTH} characters")
    return text


def to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value
