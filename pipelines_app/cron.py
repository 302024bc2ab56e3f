"""Five-field cron expressions with standard cron semantics, evaluated in UTC.

APScheduler 3 numbers weekdays from Monday (0 = Monday), while cron numbers them from Sunday
(0 and 7 = Sunday). The original Fast-Flow passed cron strings straight to APScheduler, so
`0 0 * * 0` fired on Mondays. Here the day-of-week field is expanded to a set of days and handed
to APScheduler as names (`sun,wed`), which mean the same thing in both worlds.

Standard cron fires when EITHER day-of-month or day-of-week matches if both are restricted;
APScheduler requires both. Rather than silently change the meaning, such expressions are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from pipelines_app.errors import SpecError

FIELD_NAMES = ("minute", "hour", "day", "month", "day_of_week")
FIELD_LABELS = {
    "minute": "minute",
    "hour": "hour",
    "day": "day-of-month",
    "month": "month",
    "day_of_week": "day-of-week",
}
DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _dow_value(token: str) -> int:
    text = token.strip().lower()
    if text in DOW_NAMES:
        return DOW_NAMES.index(text)
    if text.isdigit():
        value = int(text)
        if 0 <= value <= 7:
            return value
        raise SpecError(f"day-of-week value {value} is out of range (0-7, 0 and 7 = Sunday)")
    raise SpecError(f"day-of-week: unknown value {token!r} (use 0-7 or sun-sat)")


def _expand_day_of_week(field: str) -> set[int]:
    days: set[int] = set()
    for item in field.split(","):
        if not item:
            raise SpecError(f"day-of-week {field!r}: empty list item")
        span, has_step, step_text = item.partition("/")
        step = 1
        if has_step:
            if not step_text.isdigit() or int(step_text) < 1:
                raise SpecError(f"day-of-week {item!r}: the step must be a positive integer")
            step = int(step_text)
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _dow_value(start), _dow_value(end)
            if first > last:
                raise SpecError(f"day-of-week range {span!r} runs backwards")
        else:
            first = _dow_value(span)
            # `5/2` means "from Friday, every second day up to the end of the week" (cronie).
            last = 7 if has_step else first
        days.update(value % 7 for value in range(first, last + 1, step))
    return days


def _day_of_week_for_apscheduler(field: str) -> str:
    days = _expand_day_of_week(field)
    if len(days) == 7:
        return "*"
    return ",".join(DOW_NAMES[day] for day in sorted(days))


def _field_error(fields: dict[str, str]) -> str | None:
    """Find which field APScheduler rejects, so the message can name it."""
    for name, value in fields.items():
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as exc:
            return f"{FIELD_LABELS[name]} field {value!r}: {exc}"
    return None


def cron_trigger(
    expr: str, *, start: datetime | None = None, end: datetime | None = None
) -> CronTrigger:
    """A UTC CronTrigger for a 5-field cron expression; raises SpecError with the reason."""
    if not isinstance(expr, str):
        raise SpecError(f"expected a cron string, got {type(expr).__name__}")
    values = expr.split()
    if len(values) != 5:
        raise SpecError(f"expected 5 fields, got {len(values)}")
    minute, hour, day, month, day_of_week = values
    if not day.startswith("*") and not day_of_week.startswith("*"):
        raise SpecError(
            f"day-of-month {day!r} and day-of-week {day_of_week!r} are both restricted: "
            "standard cron would fire when either matches, which this scheduler does not do; "
            "restrict only one of them and use '*' for the other"
        )
    fields = {"minute": minute, "hour": hour, "day": day, "month": month}
    problem = _field_error(fields)
    if problem:
        raise SpecError(problem)
    try:
        return CronTrigger(
            **fields,
            day_of_week=_day_of_week_for_apscheduler(day_of_week),
            start_date=start,
            end_date=end,
            timezone=UTC,
        )
    except ValueError as exc:
        raise SpecError(str(exc)) from exc


def validate_cron(expr: str) -> None:
    cron_trigger(expr)


def next_fire_times(
    trigger: BaseTrigger, count: int = 5, now: datetime | None = None
) -> list[datetime]:
    """The next `count` fire times (UTC) of any APScheduler trigger, after `now`."""
    moment = now or datetime.now(UTC)
    times: list[datetime] = []
    previous: datetime | None = None
    while len(times) < count:
        # With a previous fire time APScheduler starts searching at min(now, previous + 1µs),
        # so `now` must move along or the same time comes back.
        if previous is None:
            upcoming = trigger.get_next_fire_time(None, moment)
        else:
            after = previous + timedelta(microseconds=1)
            upcoming = trigger.get_next_fire_time(previous, after)
        if upcoming is None:
            break
        times.append(upcoming.astimezone(UTC))
        previous = upcoming
    return times
