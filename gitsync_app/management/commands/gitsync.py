from __future__ import annotations

import socket

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit_app.context import AuditContext
from fastflow_site.errors import ServiceError
from gitsync_app.services import repository_request_sync, repository_sync


class Command(BaseCommand):
    help = (
        "Sync the pipelines directory with the configured git repository now (fetch, check "
        "out, switch, discover). Old checkouts are left for the engine to remove."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--request",
            action="store_true",
            help="Only ask the running engine to sync (as Sync now in the admin does).",
        )

    def handle(self, *args: object, request: bool = False, **options: object) -> None:
        try:
            if request:
                repo = repository_request_sync(
                    requested_by="manage.py gitsync --request",
                    audit=AuditContext.command("gitsync"),
                )
                self.stdout.write(f"Sync of {repo.url} ({repo.branch}) requested.")
                return
            result = repository_sync(
                holder=f"gitsync@{socket.gethostname()}", audit=AuditContext.command("gitsync")
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        if not result.ok:
            raise CommandError(result.summary())
        self.stdout.write(result.summary())
