"""Presentation helpers for the pipeline admin: state badge, problems box, schedules, metadata."""

from __future__ import annotations

import json
from datetime import datetime

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from pipelines_app.cron import cron_trigger, next_fire_times
from pipelines_app.errors import SpecError
from pipelines_app.models import Pipeline, PipelineState
from pipelines_app.spec import PipelineSpec

STATE_COLOURS = {
    PipelineState.READY: "#198754",
    PipelineState.DISABLED: "#6c757d",
    PipelineState.BROKEN: "#dc3545",
    PipelineState.MISSING: "#fd7e14",
}
ERROR_STYLE = "color:#dc3545;font-weight:600;"
NEXT_FIRE_COUNT = 3


def state_badge(pipeline: Pipeline) -> SafeString:
    state = pipeline.state
    return format_html(
        '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;'
        'font-size:11px;font-weight:600;">{}</span>',
        STATE_COLOURS[state],
        state.upper(),
    )


def problems_box(pipeline: Pipeline) -> SafeString | str:
    """The error (red) and warnings (amber) block shown at the top of the change form."""
    parts = []
    if pipeline.is_missing:
        parts.append(
            format_html(
                '<p style="{}">The folder is gone from the pipelines directory: this pipeline '
                "cannot run. Its history is kept.</p>",
                ERROR_STYLE,
            )
        )
    if pipeline.discovery_error:
        items = format_html_join(
            "", "<li>{}</li>", ((e,) for e in _split(pipeline.discovery_error))
        )
        parts.append(
            format_html(
                '<div style="{}">This pipeline cannot run until its configuration is fixed:'
                "<ul>{}</ul></div>",
                ERROR_STYLE,
                items,
            )
        )
        if "encrypted_env" in pipeline.discovery_error:
            parts.append(_encrypt_hint())
    if pipeline.discovery_warnings:
        items = format_html_join("", "<li>{}</li>", ((w,) for w in pipeline.discovery_warnings))
        parts.append(format_html('<div style="color:#b26a00;">Warnings:<ul>{}</ul></div>', items))
    return format_html_join("", "{}", ((p,) for p in parts)) if parts else "—"


def _encrypt_hint() -> SafeString | str:
    try:  # the page belongs to the secrets admin; a URL name, not an import
        url = reverse("admin:secrets_app_encrypt_value")
    except NoReverseMatch:
        return ""
    return format_html(
        '<p>Make a value for <code>encrypted_env</code> on the <a href="{}">Encrypt a value</a> '
        "page (or with <code>manage.py encryptvalue</code>) and paste it into the file.</p>",
        url,
    )


def _split(error: str) -> list[str]:
    return [part for part in error.split("; ") if part]


def metadata_html(pipeline: Pipeline) -> SafeString:
    # Redacted for every role: the page is read on shared screens, and an ADMIN who needs a
    # webhook key reads it from the file or the API.
    text = json.dumps(pipeline.metadata_redacted(), indent=2, ensure_ascii=False)
    return format_html('<pre style="white-space:pre-wrap;margin:0;">{}</pre>', text)


def _fire_times(cron: str, start: datetime | None, end: datetime | None) -> str:
    try:
        times = next_fire_times(cron_trigger(cron, start=start, end=end), NEXT_FIRE_COUNT)
    except SpecError as exc:
        return f"invalid: {exc}"
    return ", ".join(t.strftime("%Y-%m-%d %H:%M UTC") for t in times) or "no future runs"


def _schedule_rows(spec: PipelineSpec) -> list[tuple[str, str, str]]:
    """(run configuration, trigger, next fire times) for every trigger in the spec."""
    entries: list[tuple[str, str | None, int | None, datetime | None, datetime | None, bool]] = [
        (
            "(pipeline)",
            spec.schedule_cron,
            spec.schedule_interval_seconds,
            spec.schedule_start,
            spec.schedule_end,
            True,
        )
    ]
    entries += [
        (
            rc.id,
            rc.schedule_cron,
            rc.schedule_interval_seconds,
            rc.schedule_start,
            rc.schedule_end,
            rc.enabled,
        )
        for rc in spec.run_configs
    ]
    rows = []
    for name, cron, interval, start, end, enabled in entries:
        suffix = "" if enabled else " (disabled)"
        if cron:
            rows.append((name, f"cron {cron}{suffix}", _fire_times(cron, start, end)))
        elif interval:
            rows.append((name, f"every {interval} s{suffix}", ""))
    if spec.run_once_at:
        rows.append(("(pipeline)", "once", spec.run_once_at.strftime("%Y-%m-%d %H:%M UTC")))
    return rows


def schedules_html(pipeline: Pipeline) -> SafeString | str:
    if pipeline.discovery_error:
        return "—"
    rows = _schedule_rows(pipeline.spec)
    if not rows:
        return "No schedule: runs start manually, by webhook or downstream."
    body = format_html_join("", "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>", rows)
    return format_html(
        "<table><thead><tr><th>Run configuration</th><th>Trigger</th><th>Next runs</th></tr>"
        "</thead><tbody>{}</tbody></table>",
        body,
    )
