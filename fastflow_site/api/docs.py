"""`/api/docs/`: the OpenAPI document rendered as a plain page.

Swagger UI and ReDoc load their scripts from a CDN, which self-hosted installs often cannot
reach; this page is served by Django alone and links to the raw schema for real tooling.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from drf_spectacular.generators import SchemaGenerator

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _schema_ref(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    return schema.get("type", "") or ""


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = (op.get("requestBody") or {}).get("content", {})
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "id": op.get("operationId", ""),
                    "tag": (op.get("tags") or ["api"])[0],
                    "description": op.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "where": p["in"],
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "request": ", ".join(
                        f"{ctype}: {_schema_ref(c.get('schema'))}" for ctype, c in body.items()
                    ),
                    "responses": [
                        {
                            "status": code,
                            "body": ", ".join(
                                f"{ctype}: {_schema_ref(c.get('schema'))}"
                                for ctype, c in (resp.get("content") or {}).items()
                            ),
                        }
                        for code, resp in op.get("responses", {}).items()
                    ],
                }
            )
    return operations


@require_safe
def api_docs(request: HttpRequest) -> HttpResponse:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema.get("components", {}).get("schemas", {})
    context = {
        "info": schema.get("info", {}),
        "operations": _operations(schema),
        "components": [
            {"name": name, "json": json.dumps(body, indent=2, sort_keys=True)}
            for name, body in sorted(components.items())
        ],
    }
    return render(request, "api/docs.html", context)
