"""Serializer pieces shared by the API modules of several apps."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """The body of every API error (documentation only)."""

    error = serializers.CharField(help_text="stable machine-readable code")
    detail = serializers.CharField(help_text="human-readable explanation")
    fields = serializers.DictField(child=serializers.CharField(), help_text="field → message")


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    return {s: OpenApiResponse(response=ErrorSerializer) for s in statuses}


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class StringMapField(serializers.Field):
    """A JSON object passed through untouched: the run services validate keys and values.

    Only the container type is checked here so that a single rule (names, counts, sizes) lives in
    `runs_app.services.run_parameters_validate` for the API, the webhook and the admin alike.
    """

    default_error_messages = {"not_a_map": "expected a JSON object of string keys and values"}

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("not_a_map")
        return data

    def to_representation(self, value: Any) -> dict:
        return dict(value or {})


class LenientChoiceField(serializers.ChoiceField):
    """A choice matched regardless of case (`cron` is `CRON`); a miss names the valid choices.

    The stored codes are upper case (`SUCCESS`, `CRON`), what people type often is not.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        valid = ", ".join(str(choice) for choice in self.choices)
        self.error_messages["invalid_choice"] = f'"{{input}}" is not a valid choice ({valid}).'

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str):
            folded = data.casefold()
            data = next(
                (c for c in self.choices if isinstance(c, str) and c.casefold() == folded), data
            )
        return super().to_internal_value(data)
