from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class NotificationsConfig(AppConfig):
    name = "notifications_app"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from notifications_app.services import channels_rotate
        from secrets_app.rotation import rotation_register

        allowlist_check()
        rotation_register("notification target URL", channels_rotate)


def allowlist_check() -> None:
    """A bad FASTFLOW_NOTIFY_ALLOWED_HOSTS entry stops the start, naming the variable (the
    settings module reads the list; parsing it is this app's business)."""
    from notifications_app.ssrf import parse_allowlist

    try:
        parse_allowlist(settings.FASTFLOW_NOTIFY_ALLOWED_HOSTS)
    except ValueError as exc:
        raise ImproperlyConfigured(f"FASTFLOW_NOTIFY_ALLOWED_HOSTS: {exc}") from exc
