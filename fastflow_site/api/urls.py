from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from fastflow_site.api.errors import api_not_found

# The schema and its page are public: they document the API and expose no data.
PUBLIC = {"authentication_classes": [], "permission_classes": []}

urlpatterns = [
    path("", include("pipelines_app.api_urls")),
    path("", include("runs_app.api_urls")),
    path("", include("secrets_app.api_urls")),
    path("", include("accounts_app.api_urls")),
    path("", include("gitsync_app.api_urls")),
    path(
        "schema/",
        SpectacularAPIView.as_view(**PUBLIC),
        name="api-schema",
    ),
    # Swagger UI from drf-spectacular-sidecar's static files (SPECTACULAR_SETTINGS), served by
    # this installation (whitenoise), never from a CDN. Not ReDoc: its bundle always loads a
    # logo from cdn.redoc.ly.
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", **PUBLIC),
        name="api-docs",
    ),
    # Last: unknown /api/ paths answer in the API's error shape, not Django's HTML page.
    re_path(r"^", api_not_found),
]
