from __future__ import annotations

from django.apps import AppConfig


class GitsyncAppConfig(AppConfig):
    name = "gitsync_app"
    verbose_name = "Git sync"
    default_auto_field = "django.db.models.BigAutoField"
