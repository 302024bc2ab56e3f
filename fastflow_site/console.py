"""Presentation helpers shared by every console page: times as `<time>` tags (relative, with the
exact UTC time to the second in a tooltip), compact durations and sizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

EXACT_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def exact_time(moment: datetime) -> str:
    """The moment in UTC to the second: what every tooltip and export shows."""
    return moment.astimezone(UTC).strftime(EXACT_FORMAT)


def relative_time(moment: datetime, *, now: datetime | None = None) -> str:
    """ "12 s ago", "3 min ago", "in 5 min", "2 h ago", "yesterday 14:05", "Mar 4 14:05"."""
    now = now or timezone.now()
    delta = (now - moment).total_seconds()
    future = delta < 0
    seconds = abs(delta)
    if seconds < 45:
        text = f"{int(seconds)} s"
    elif seconds < 45 * 60:
        text = f"{round(seconds / 60)} min"
    elif seconds < 20 * 3600:
        hours, rest = divmod(int(seconds), 3600)
        minutes = round(rest / 60)
        text = (
            f"{hours} h {minutes:02d} min"
            if hours < 3 and minutes
            else f"{round(seconds / 3600)} h"
        )
    else:
        utc = moment.astimezone(UTC)
        if utc.date() == (now.astimezone(UTC) - timedelta(days=1)).date():
            return f"yesterday {utc:%H:%M}"
        if utc.year == now.year:
            return f"{utc:%b} {utc.day} {utc:%H:%M}"
        return f"{utc:%Y-%m-%d %H:%M}"
    return f"in {text}" if future else f"{text} ago"


def time_tag(moment: datetime | None, *, now: datetime | None = None) -> SafeString | str:
    """`<time>` with the relative text, the exact time as its tooltip and ISO 8601 as its
    value (console.js keeps the relative text current); "—" for no time."""
    if moment is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}" data-ff-relative>{}</time>',
        moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        exact_time(moment),
        relative_time(moment, now=now),
    )


def clock_tag(moment: datetime | None) -> SafeString | str:
    """The time of day in UTC to the second, the full date and time as its tooltip: for times
    compared side by side (queued, started, finished)."""
    if moment is None:
        return "—"
    utc = moment.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        utc.isoformat(timespec="seconds").replace("+00:00", "Z"),
        exact_time(utc),
        utc.strftime("%H:%M:%S"),
    )


def format_duration(seconds: float | timedelta | None) -> str:
    """ "0.4 s", "12.3 s", "4 min 05 s", "2 h 03 min", "3 d 4 h": precise for short runs,
    compact for long ones."""
    if seconds is None:
        return "—"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return (
            f"{seconds:.0f} s" if seconds == int(seconds) and seconds >= 1 else f"{seconds:.1f} s"
        )
    whole = int(round(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"


def format_bytes(value: float | None) -> str:
    """Binary units: "512 B", "1.5 KiB", "200.0 MiB", "1.2 GiB"."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            if unit == "B" or size == int(size):
                return f"{size:.0f} {unit}"
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
