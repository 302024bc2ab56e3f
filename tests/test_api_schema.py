from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/pipelines/", "get"),
    ("/api/pipelines/{name}/", "get"),
    ("/api/pipelines/{name}/", "patch"),
    ("/api/pipelines/{name}/runs/", "post"),
    ("/api/pipelines/sync/", "post"),
    ("/api/runs/", "get"),
    ("/api/runs/{run_id}/", "get"),
    ("/api/runs/{run_id}/cancel/", "post"),
    ("/api/runs/{run_id}/retry/", "post"),
    ("/api/runs/{run_id}/logs/", "get"),
    ("/api/runs/{run_id}/logs/stream/", "get"),
    ("/api/runs/{run_id}/metrics/", "get"),
    ("/api/schedules/", "get"),
    ("/api/schedules/", "post"),
    ("/api/schedules/{schedule_id}/", "get"),
    ("/api/schedules/{schedule_id}/", "patch"),
    ("/api/schedules/{schedule_id}/", "delete"),
    ("/api/secrets/", "get"),
    ("/api/secrets/", "post"),
    ("/api/secrets/{key}/", "get"),
    ("/api/secrets/{key}/", "put"),
    ("/api/secrets/{key}/", "delete"),
}


def test_it_publishes_an_openapi_document_without_authentication():
    response = APIClient().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    documented = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert documented >= OPERATIONS
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error = schema["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"error", "detail", "fields"}
    # Each view's nested serializers get their own component, no collisions.
    assert {"PipelineRunCreateInput", "RunMetricsOutput", "PipelineSyncOutput"} <= set(
        schema["components"]["schemas"]
    )


def test_it_documents_errors_and_non_json_bodies():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()

    create = schema["paths"]["/api/pipelines/{name}/runs/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "404", "409", "413"} <= set(create)
    logs = schema["paths"]["/api/runs/{run_id}/logs/"]["get"]["responses"]["200"]
    assert "text/plain" in logs["content"]
    stream = schema["paths"]["/api/runs/{run_id}/logs/stream/"]["get"]["responses"]["200"]
    assert "text/event-stream" in stream["content"]


# Every <script src> and <link href> of a page (stylesheets, icons, the Swagger UI bundle).
ASSET = re.compile(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"')


def test_it_renders_the_docs_page_offline():
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    # Everything is served from here: no scripts or styles from a CDN.
    assert "https://" not in page
    assert "http://" not in page
    assets = ASSET.findall(page)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith(f"{settings.STATIC_URL}drf_spectacular_sidecar/"), asset
        # A file of this installation (collectstatic gathers it; whitenoise serves it: see
        # test_settings_env and the browser test in test_api_docs_browser).
        assert finders.find(asset.removeprefix(settings.STATIC_URL)), asset
