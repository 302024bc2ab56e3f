from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("fastflow_site.health_urls")),
    path("", include("accounts_app.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("fastflow_site.api.urls")),
    path("webhooks/", include("runs_app.webhook_urls")),
    path("", include("runs_app.prometheus_urls")),
]
