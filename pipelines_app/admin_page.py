"""What the pipeline page shows from the pipeline alone: its badges (state, schedule, webhook,
limits, retries, dependencies), its one-hop graph of upstream and downstream pipelines, and its
code. What runs add (recent runs, schedules with their next fires, Run now) is runs_app's."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.safestring import SafeString

from fastflow_site.charts import Node, flow_graph
from fastflow_site.console import format_bytes, format_duration
from pipelines_app.admin_display import STATE_TONES
from pipelines_app.errors import SpecError
from pipelines_app.models import Pipeline
from pipelines_app.spec import PipelineSpec


@dataclass(frozen=True)
class Badge:
    label: str
    value: str
    tone: str = ""  # good, bad, off or "" (console.css colours them)
    title: str = ""


def _spec(pipeline: Pipeline) -> PipelineSpec | None:
    try:
        return pipeline.spec
    except SpecError:
        return None


def _schedule_badge(spec: PipelineSpec) -> Badge:
    if spec.schedule_cron:
        return Badge("schedule", f"cron {spec.schedule_cron}", "good", "UTC, standard cron")
    if spec.schedule_interval_seconds:
        every = format_duration(spec.schedule_interval_seconds)
        return Badge("schedule", f"every {every}", "good")
    count = spec.schedule_count
    if count:
        return Badge("schedule", f"{count} schedule{'s' if count > 1 else ''}", "good")
    return Badge("schedule", "none", "off", "Runs start manually, by webhook or downstream")


def _limits_badge(spec: PipelineSpec) -> Badge:
    parts = []
    if spec.cpu_hard_limit:
        parts.append(f"{spec.cpu_hard_limit:g} CPU")
    if spec.mem_hard_limit:
        parts.append(f"{format_bytes(spec.mem_hard_limit)} RAM")
    if spec.timeout:
        parts.append(f"timeout {format_duration(spec.timeout)}")
    if spec.max_instances:
        parts.append(f"max {spec.max_instances} at once")
    if not parts:
        return Badge("limits", "defaults", "off", "The installation's default limits apply")
    return Badge("limits", " · ".join(parts))


def pipeline_badges(pipeline: Pipeline) -> list[Badge]:
    state = pipeline.state
    badges = [Badge("state", state.value, STATE_TONES[state])]
    spec = _spec(pipeline)
    if spec is None or pipeline.discovery_error:
        return badges
    badges.append(_schedule_badge(spec))
    webhook = bool(spec.webhook_key or any(rc.webhook_key for rc in spec.run_configs))
    badges.append(
        Badge(
            "webhook",
            "on" if webhook else "off",
            "good" if webhook else "off",
            "POST /webhooks/<pipeline>/<key> (the key is in pipeline.json)" if webhook else "",
        )
    )
    badges.append(_limits_badge(spec))
    if spec.retry_attempts:
        strategy = spec.retry_strategy.type.replace("_", " ")
        badges.append(Badge("retries", f"{spec.retry_attempts} × {strategy}"))
    badges.append(
        Badge(
            "requirements",
            "requirements.txt" if pipeline.has_requirements else "none",
            "" if pipeline.has_requirements else "off",
        )
    )
    if spec.python_version:
        badges.append(Badge("python", spec.python_version))
    return badges


def _pipeline_url(name: str) -> str:
    return reverse("admin:pipelines_app_pipeline_change", args=[quote(name)])


def _condition(on_success: bool, on_failure: bool) -> str:
    if on_success and on_failure:
        return "always"
    return "on success" if on_success else "on failure" if on_failure else "never"


def pipeline_graph(pipeline: Pipeline) -> SafeString | None:
    """Upstream (pipelines whose downstream_triggers name this one) → this → downstream; None
    when it has neither. Reads every pipeline's metadata once (one query; pipelines number in
    the hundreds, not millions) and each neighbour's last run status for its dot."""
    spec = _spec(pipeline)
    downstream = list(spec.downstream_triggers) if spec else []
    upstream: list[tuple[str, str]] = []
    others = Pipeline.objects.exclude(pk=pipeline.pk).with_last_run()
    statuses: dict[str, str | None] = {}
    for other in others.only("pipeline_name", "metadata"):
        statuses[other.pk] = other.last_run_status
        other_spec = _spec(other)
        for trigger in other_spec.downstream_triggers if other_spec else ():
            if trigger.pipeline == pipeline.pk:
                upstream.append((other.pk, _condition(trigger.on_success, trigger.on_failure)))
    if not upstream and not downstream:
        return None

    def neighbour(name: str, note: str) -> Node:
        known = name in statuses
        status = statuses.get(name)
        return Node(
            label=name,
            href=_pipeline_url(name) if known else None,
            css=f"ff-s-{status}" if status else "",
            note=note,
            title=f"{name}: last run {status or 'none'}" if known else f"{name} (not found)",
        )

    return flow_graph(
        [neighbour(name, note) for name, note in upstream],
        Node(label=pipeline.pk, css=""),
        [
            neighbour(
                t.pipeline,
                _condition(t.on_success, t.on_failure)
                + (f" · {t.run_config_id}" if t.run_config_id else ""),
            )
            for t in downstream
        ],
        label=f"Pipelines that trigger {pipeline.pk} and that it triggers",
    )
