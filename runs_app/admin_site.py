"""The admin site of the console: the dashboard is its index, the header navigation replaces
the model sidebar, and "View site" is gone (there is no site outside the admin; it led to a
404). Installed as the default site by fastflow_site.apps.ConsoleAdminConfig, so every
`admin.site.register` and `@admin.register` lands here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from runs_app.admin_dashboard import dashboard_context


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Fast-Flow"
    site_title = "Fast-Flow"
    index_title = "Dashboard"
    site_url = None
    enable_nav_sidebar = False
    index_template = "admin/dashboard.html"

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        return super().index(
            request, {**dashboard_context(request, site=self), **(extra_context or {})}
        )
