"""Admin forms: "Run now" with parameters, and schedules validated by the schedule services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from pipelines_app.models import Pipeline
from runs_app.errors import InvalidRunRequest
from runs_app.models import ScheduledJob
from runs_app.schedule_services import EDITABLE_FIELDS, scheduledjob_clean
from runs_app.services import run_parameters_validate

DEFAULT_RUN_CONFIG = ""


def parse_parameter_lines(text: str) -> dict[str, str]:
    """`KEY=value` lines → dict. Blank lines are skipped; the value keeps everything after '='."""
    parameters: dict[str, str] = {}
    errors = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(f"Line {number}: expected KEY=value, got {line!r}.")
        elif key in parameters:
            errors.append(f"Line {number}: parameter {key!r} is given twice.")
        else:
            parameters[key] = value
    if errors:
        raise ValidationError(errors)
    return parameters


PARAMETER_FIELD_PREFIX = "param_"


class RunNowForm(forms.Form):
    """Run now: the run configuration, one field per documented variable (the `default_env`
    keys of the pipeline and its run configurations, pre-filled with the chosen
    configuration's defaults), and further KEY=value lines. A documented field becomes a
    parameter only when its value differs from the default, so a run records what was
    changed, and its environment records what it got."""

    run_config_id = forms.ChoiceField(
        label="Run configuration",
        required=False,
        help_text="A run configuration from the pipeline's pipeline.json, or the defaults.",
    )
    parameters = forms.CharField(
        label="More parameters",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "spellcheck": "false"}),
        help_text="One KEY=value per line, for variables not listed above. Parameters reach "
        "the pipeline as environment variables.",
    )

    def __init__(self, *args: Any, pipeline: Pipeline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline
        choices = [(DEFAULT_RUN_CONFIG, "default (pipeline settings)")]
        choices += [(rc.id, rc.id) for rc in pipeline.spec.run_configs]
        self.fields["run_config_id"].choices = choices
        self.defaults = run_config_defaults(pipeline)
        chosen = (
            self.data.get("run_config_id", "")
            if self.is_bound
            else self.initial.get("run_config_id", DEFAULT_RUN_CONFIG)
        )
        current = self.defaults.get(chosen or DEFAULT_RUN_CONFIG, {})
        documented = sorted({key for env in self.defaults.values() for key in env})
        for key in documented:
            name = PARAMETER_FIELD_PREFIX + key
            self.fields[name] = forms.CharField(
                label=key,
                required=False,
                strip=False,
                initial=current.get(key, ""),
                widget=forms.TextInput(
                    attrs={"data-ff-parameter": key, "spellcheck": "false", "size": 40}
                ),
                help_text=_default_help(current.get(key)),
            )
        # The documented fields first, the free-form lines after them.
        order = ["run_config_id", *(PARAMETER_FIELD_PREFIX + key for key in documented)]
        self.order_fields([*order, "parameters"])

    @property
    def documented_fields(self) -> list:
        return [self[name] for name in self.fields if name.startswith(PARAMETER_FIELD_PREFIX)]

    def clean_run_config_id(self) -> str | None:
        return self.cleaned_data.get("run_config_id") or None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        defaults = self.defaults.get(data.get("run_config_id") or DEFAULT_RUN_CONFIG, {})
        try:
            extra = parse_parameter_lines(data.get("parameters") or "")
        except ValidationError as exc:
            self.add_error("parameters", exc)
            return data
        # A field the request did not send (a script posting only `parameters`) keeps its
        # default; a browser always sends every field.
        changed = {
            name.removeprefix(PARAMETER_FIELD_PREFIX): value
            for name, value in data.items()
            if name.startswith(PARAMETER_FIELD_PREFIX)
            and name in self.data
            and value != defaults.get(name.removeprefix(PARAMETER_FIELD_PREFIX), "")
        }
        both = sorted(set(changed) & set(extra))
        if both:
            self.add_error(
                "parameters", f"Given above as well: {', '.join(both)}. Set each variable once."
            )
            return data
        try:
            data["parameters"] = run_parameters_validate(parameters={**changed, **extra})
        except InvalidRunRequest as exc:
            self.add_error("parameters", list(exc.fields.values()) or str(exc))
        return data


def _default_help(default: str | None) -> str:
    if default is None:
        return "Not set by this run configuration."
    return f"Default: {default!r} (pipeline.json). Change it to pass a parameter."


def fixed_variables(pipeline: Pipeline) -> list[tuple[str, str]]:
    """Variables every run gets that a parameter may not replace: secrets, encrypted values."""
    spec = pipeline.spec
    encrypted = set(spec.encrypted_env) | {k for rc in spec.run_configs for k in rc.encrypted_env}
    return [(name, "secret") for name in spec.secrets] + [
        (name, "encrypted") for name in sorted(encrypted)
    ]


def run_config_defaults(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    """{run configuration id ("" for the defaults): its default_env merged over the pipeline's}."""
    spec = pipeline.spec
    configs = [DEFAULT_RUN_CONFIG, *(rc.id for rc in spec.run_configs)]
    return {rc: dict(spec.effective(rc or None).default_env) for rc in configs}


class ScheduledJobForm(forms.ModelForm):
    class Meta:
        model = ScheduledJob
        fields = EDITABLE_FIELDS
        help_texts = {
            "trigger_value": (
                "CRON: five fields in UTC (minute hour day-of-month month day-of-week; "
                "0 and 7 are Sunday). INTERVAL: a number of seconds."
            ),
            "run_config_id": "Optional: a run configuration id from the pipeline's pipeline.json.",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk and self.instance.is_file_defined:
            raise ValidationError("This schedule is defined in pipeline.json; edit the file.")
        if self.has_error("trigger_type") or "trigger_value" not in data:
            return data
        probe = ScheduledJob(**{name: data.get(name) for name in EDITABLE_FIELDS})
        probe.run_config_id = probe.run_config_id or ""
        try:
            scheduledjob_clean(job=probe)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
            return data
        data["trigger_value"] = probe.trigger_value
        data["run_config_id"] = probe.run_config_id
        return data
