from __future__ import annotations

from django.apps import AppConfig


class PipelinesAppConfig(AppConfig):
    name = "pipelines_app"
    verbose_name = "Pipelines"
    default_auto_field = "django.db.models.BigAutoField"
