from __future__ import annotations

import logging

from django.apps import AppConfig


class AccountsAppConfig(AppConfig):
    name = "accounts_app"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts_app.logfilters import RedactLinkTokens

        # The development server logs every request line with its query string; settings.LOGGING
        # cannot add a filter to `django.server` without replacing Django's handler for it.
        server = logging.getLogger("django.server")
        if not any(isinstance(f, RedactLinkTokens) for f in server.filters):
            server.addFilter(RedactLinkTokens())
