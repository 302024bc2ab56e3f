"""OpenAPI generation tweaks (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"])."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class FastflowAutoSchema(AutoSchema):
    """Component names of nested serializers: `RunMetricsApi.OutputSerializer` → `RunMetricsOutput`

    Every view declares its own `InputSerializer`/`OutputSerializer`; by class name alone they
    would all collide into one `Input`/`Output` component.
    """

    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        owner, _, name = type(serializer).__qualname__.rpartition(".")
        if owner and "<locals>" not in owner:
            owner = owner.split(".")[-1].removesuffix("Api").removesuffix("View")
            return owner + name
        return super().get_serializer_name(serializer, direction)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts_app.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An API token: `manage.py issuetoken` or POST /api/tokens/.",
        }
