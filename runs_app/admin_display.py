"""Small presentation helpers for the run admin: badges, durations, log tail, resource summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils.html import format_html
from django.utils.safestring import SafeString

from runs_app.logs import log_lines_parse
from runs_app.models import PipelineRun, RunStatus
from runs_app.run_output import LOG, log_read, output_size

STATUS_COLOURS = {
    RunStatus.PENDING: "#6c757d",
    RunStatus.RUNNING: "#0d6efd",
    RunStatus.SUCCESS: "#198754",
    RunStatus.FAILED: "#dc3545",
    RunStatus.CANCELLED: "#b45309",
}
# The run page shows at most this much of the log; the rest is one click away (download).
INITIAL_LOG_BYTES = 256 * 1024
SPARKLINE_POINTS = 120


def status_badge(status: str, *, cancel_requested: bool = False) -> SafeString:
    """A coloured status label, usable on any admin page (inline colours, no stylesheet needed).

    On the run page the live log script re-labels it and drops the inline style, so the
    `data-status` rules of run_admin.css colour it from then on.
    """
    label = f"{status} (cancel requested)" if cancel_requested else status
    return format_html(
        '<span class="ff-status" data-ff-run-status data-status="{}" style="background:{};'
        "color:#fff;padding:2px 8px;border-radius:10px;font-size:11px;font-weight:600;"
        'white-space:nowrap">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#6c757d"),
        label,
    )


def format_seconds(seconds: float | timedelta | None) -> str:
    if seconds is None:
        return "—"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"


def format_bytes(value: int | float | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def log_tail(
    *, run: PipelineRun, max_bytes: int = INITIAL_LOG_BYTES
) -> tuple[list[dict], int, bool]:
    """The last `max_bytes` of the log as parsed lines (whole lines; `LogLine.to_dict()`:
    source, time, text), the offset after them, and whether earlier lines were left out."""
    size = output_size(run=run, stream=LOG)
    if size is None:
        return [], 0, False
    start = max(size - max_bytes, 0)
    data, next_offset = log_read(run=run, offset=start, limit=max_bytes)
    truncated = start > 0
    if truncated:
        # Started mid-file: drop the partial first line.
        data = data[data.find(b"\n") + 1 :]
    return log_lines_json(data), next_offset, truncated


def log_lines_json(data: bytes) -> list[dict]:
    """Whole log lines as the run page shows them: each with its source (stdout, stderr, note;
    "unknown" for logs written before sources existed), time and text."""
    return [line.to_dict() for line in log_lines_parse(data)]


@dataclass(frozen=True)
class ResourceSummary:
    samples: int
    cpu_avg: float | None
    cpu_max: float | None
    memory_peak: int | None
    cpu_series: tuple[float, ...]
    memory_series: tuple[float, ...]


def resource_summary(*, samples: list[dict], peak_memory_bytes: int | None) -> ResourceSummary:
    cpu = [
        float(s["cpu_percent"]) for s in samples if isinstance(s.get("cpu_percent"), int | float)
    ]
    memory = [
        float(s["memory_bytes"]) for s in samples if isinstance(s.get("memory_bytes"), int | float)
    ]
    peaks = [v for v in (peak_memory_bytes, max(memory, default=None)) if v is not None]
    return ResourceSummary(
        samples=len(samples),
        cpu_avg=sum(cpu) / len(cpu) if cpu else None,
        cpu_max=max(cpu, default=None),
        memory_peak=int(max(peaks)) if peaks else None,
        cpu_series=_downsample(cpu),
        memory_series=_downsample(memory),
    )


def _downsample(values: list[float]) -> tuple[float, ...]:
    """At most SPARKLINE_POINTS values, keeping each bucket's maximum so spikes stay visible."""
    if len(values) <= SPARKLINE_POINTS:
        return tuple(values)
    size = len(values) / SPARKLINE_POINTS
    return tuple(
        max(values[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
        for i in range(SPARKLINE_POINTS)
    )


def sparkline(values: tuple[float, ...], *, colour: str, width: int = 240, height: int = 36) -> str:
    """An inline SVG polyline; empty when there are fewer than two points."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values)
    )
    return format_html(
        '<svg class="ff-sparkline" width="{}" height="{}" viewBox="0 0 {} {}" role="img">'
        '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/></svg>',
        width,
        height,
        width,
        height,
        colour,
        points,
    )


LIMIT_LABELS = (
    ("memory_bytes", "memory", format_bytes),
    ("cpus", "CPUs", lambda v: f"{v:g}"),
    ("pids", "processes", lambda v: f"{v:g}"),
    ("tmp_bytes", "/tmp", format_bytes),  # noqa: S108 - a label
    ("timeout_seconds", "timeout", lambda v: format_seconds(v) if v else "none"),
    ("log_max_bytes", "log", format_bytes),
)
# Limits the Docker executor enforces that another executor may not (see enforced_limits).
CONTAINER_LIMITS = ("memory_bytes", "cpus", "pids", "tmp_bytes")


def limits_summary(limits: dict) -> str:
    """The limits in force for a run as recorded when it started, one phrase each; the ones
    its executor did not enforce are named as such."""
    if not limits:
        return "—"
    parts = [
        f"{label} {show(limits[key])}"
        for key, label, show in LIMIT_LABELS
        if limits.get(key) is not None
    ]
    missing = [
        label for key, label, _ in LIMIT_LABELS if key in CONTAINER_LIMITS and key not in limits
    ]
    if missing:
        executor = limits.get("executor", "this")
        parts.append(f"not enforced by the {executor} executor: {', '.join(missing)}")
    return " · ".join(parts)
