from __future__ import annotations

from django.apps import AppConfig


class GitsyncAppConfig(AppConfig):
    name = "gitsync_app"
    verbose_name = "Git sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from gitsync_app.services import repository_credentials_rotate
        from secrets_app.rotation import rotation_register

        rotation_register("git sync credential", repository_credentials_rotate)
