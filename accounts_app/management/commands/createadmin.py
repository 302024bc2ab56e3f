from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts_app.errors import AccountError
from accounts_app.login_links import login_link_url
from accounts_app.services import user_make_admin
from audit_app.context import AuditContext

VERBS = {"created": "Created", "promoted": "Promoted", "found": "Found"}


class Command(BaseCommand):
    help = "Create (or promote) an ADMIN user and print a one-time login URL (valid 15 minutes)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")

    def handle(self, *args, username: str, email: str, **options):
        try:
            made = user_make_admin(
                username=username, email=email, audit=AuditContext.command("createadmin")
            )
        except AccountError as exc:
            prefix = "--email: " if "email" in exc.fields else ""
            raise CommandError(f"{prefix}{exc}") from None
        self.stdout.write(f"{VERBS[made.outcome]} ADMIN user '{made.user.username}'.")
        self.stdout.write(f"One-time login link (15 minutes): {login_link_url(user=made.user)}")
