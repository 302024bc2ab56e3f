from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from secrets_app.crypto import DecryptionError
from secrets_app.services import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt every secret with the first key of FASTFLOW_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        try:
            count = secrets_rotate()
        except DecryptionError as exc:
            raise CommandError(f"{exc}; no secret was changed") from exc
        self.stdout.write(f"Re-encrypted {count} secret(s) with the current key.")
