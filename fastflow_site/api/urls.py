from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from fastflow_site.api.docs import api_docs
from fastflow_site.api.errors import api_not_found

urlpatterns = [
    path("", include("pipelines_app.api_urls")),
    path("", include("runs_app.api_urls")),
    path("", include("secrets_app.api_urls")),
    path("", include("accounts_app.api_urls")),
    path("", include("audit_app.api_urls")),
    path("", include("gitsync_app.api_urls")),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
        name="api-schema",
    ),
    path("docs/", api_docs, name="api-docs"),
    # Last: unknown /api/ paths answer in the API's error shape, not Django's HTML page.
    re_path(r"^", api_not_found),
]
