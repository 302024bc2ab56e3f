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


class RunNowForm(forms.Form):
    run_config_id = forms.ChoiceField(
        label="Run configuration",
        required=False,
        help_text="A run configuration from the pipeline's pipeline.json, or the defaults.",
    )
    parameters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "spellcheck": "false"}),
        help_text="One KEY=value per line. They reach the pipeline as environment variables.",
    )

    def __init__(self, *args: Any, pipeline: Pipeline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline
        choices = [(DEFAULT_RUN_CONFIG, "default (pipeline settings)")]
        choices += [(rc.id, rc.id) for rc in pipeline.spec.run_configs]
        self.fields["run_config_id"].choices = choices

    def clean_parameters(self) -> dict[str, str]:
        parameters = parse_parameter_lines(self.cleaned_data.get("parameters") or "")
        try:
            return run_parameters_validate(parameters=parameters)
        except InvalidRunRequest as exc:
            raise ValidationError(list(exc.fields.values()) or str(exc)) from exc

    def clean_run_config_id(self) -> str | None:
        return self.cleaned_data.get("run_config_id") or None


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
