from __future__ import annotations

from django.apps import AppConfig


class FastflowSiteConfig(AppConfig):
    name = "fastflow_site"
    verbose_name = "Fast-Flow"
