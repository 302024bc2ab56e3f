from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("fastflow_site.health_urls")),
    path("", include("accounts_app.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    # The original Fast-Flow's webhook URL, kept so existing forge and cron hooks work
    # unchanged: the same view as /webhooks/ (before api/, whose catch-all answers the rest).
    path(
        "api/webhooks/",
        include(("runs_app.webhook_urls", "webhooks"), namespace="original-webhooks"),
    ),
    path("api/", include("fastflow_site.api.urls")),
    # One segment, so no pipeline webhook (/webhooks/<pipeline>/<key>) can take its place.
    path("webhooks/git", include("gitsync_app.webhook_urls")),
    path("webhooks/", include("runs_app.webhook_urls")),
    path("", include("runs_app.prometheus_urls")),
]
