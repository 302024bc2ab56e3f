from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audit_app.context import AuditContext
from secrets_app.crypto import DecryptionError
from secrets_app.rotation import rotations
from secrets_app.services import secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every secret, notification target URL and git sync credential with the "
        "first key of "
        "FASTFLOW_ENCRYPTION_KEY."
    )

    def handle(self, *args, **options):
        audit = AuditContext.command("rotatesecrets")
        try:
            count = secrets_rotate(audit=audit)
        except DecryptionError as exc:
            raise CommandError(f"{exc}; no secret was changed") from exc
        self.stdout.write(f"Re-encrypted {count} secret(s) with the current key.")
        for name, rotate in rotations().items():
            try:
                count = rotate(audit=audit)
            except DecryptionError as exc:
                raise CommandError(f"{exc}; no {name} was changed") from exc
            self.stdout.write(f"Re-encrypted {count} {name}(s).")
