"""Small presentation helpers for the run admin: badges, durations, log tail, resource summary."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString

from fastflow_site.console import exact_time, format_bytes, format_duration
from runs_app.logs import log_lines_parse
from runs_app.models import PipelineRun
from runs_app.run_output import LOG, log_read, output_size

# The run page shows at most this much of the log; the rest is one click away (download).
INITIAL_LOG_BYTES = 256 * 1024


def status_badge(status: str, *, cancel_requested: bool = False) -> SafeString:
    """A coloured status label (console.css colours it by `data-status`, in both themes)."""
    label = f"{status} · cancel requested" if cancel_requested else status
    return format_html(
        '<span class="ff-status" data-ff-run-status data-status="{}">{}</span>', status, label
    )


def duration_bar(run: PipelineRun, *, longest: float | None) -> SafeString | str:
    """The duration as text beside a bar scaled to `longest` (the page's longest run), with the
    start, end, queue wait and setup to the second in its tooltip."""
    seconds = run.elapsed
    if run.started_at is None or seconds is None:
        return "—"
    parts = [f"started {exact_time(run.started_at)}"]
    if run.finished_at:
        parts.append(f"finished {exact_time(run.finished_at)}")
    parts.append(f"waited {format_duration((run.started_at - run.queued_at).total_seconds())}")
    if run.setup_duration is not None:
        parts.append(f"setup {format_duration(run.setup_duration)}")
    share = min(seconds / longest, 1.0) if longest else 0.0
    return format_html(
        '<span class="ff-duration" data-status="{}" title="{}"><span class="ff-duration-bar">'
        '<span style="width:{}%"></span></span>{}{}</span>',
        run.status,
        " · ".join(parts),
        f"{share * 100:.1f}",
        format_duration(seconds),
        " so far" if run.finished_at is None else "",
    )


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
    )


LIMIT_LABELS = (
    ("memory_bytes", "memory", format_bytes),
    ("cpus", "CPUs", lambda v: f"{v:g}"),
    ("pids", "processes", lambda v: f"{v:g}"),
    ("tmp_bytes", "/tmp", format_bytes),  # noqa: S108 - a label
    ("timeout_seconds", "timeout", lambda v: format_duration(v) if v else "none"),
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
