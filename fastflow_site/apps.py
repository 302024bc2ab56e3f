from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.contrib.admin import apps as admin_apps
from django.db.backends.signals import connection_created


def _private_sqlite(sender: Any, connection: Any, **kwargs: Any) -> None:
    """SQLite creates its database (and WAL, SHM) files with the umask's mode, 0644 by
    default: readable by every local user. Tightened on every new connection, which costs a
    few stat calls; a file this user does not own is left alone."""
    from fastflow_site.datadir import private_sqlite_files

    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if name and name != ":memory:" and "mode=memory" not in name:
        private_sqlite_files(Path(name))


class FastflowSiteConfig(AppConfig):
    name = "fastflow_site"
    verbose_name = "Fast-Flow"

    def ready(self) -> None:
        from fastflow_site.datadir import PRIVATE_DIR, tighten
        from fastflow_site.dbpool import install_pool_check

        connection_created.connect(_private_sqlite, dispatch_uid="fastflow-private-sqlite")
        connection_created.connect(install_pool_check, dispatch_uid="fastflow-pool-check")
        # A data dir an older version created 0755 becomes 0700 (only if it is ours).
        tighten(Path(settings.DATA_DIR), PRIVATE_DIR)


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the console's site: the dashboard as its index (the site
    class is runs_app's, named here as a string like every app in settings)."""

    default = False  # named in INSTALLED_APPS; fastflow_site's own config stays the default
    default_site = "runs_app.admin_site.ConsoleAdminSite"
