from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts_app.errors import AccountError
from accounts_app.models import User
from accounts_app.services import token_issue
from audit_app.context import AuditContext


class Command(BaseCommand):
    help = "Issue an API token for a user and print it (only the token, for scripts)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--days", type=int, default=None, help="validity (default: settings)")
        parser.add_argument("--name", default="issuetoken", help="label shown in token lists")

    def handle(self, *args, username: str, days: int | None, name: str, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named '{username}'")
        try:
            api_token, token = token_issue(
                user=user, days=days, name=name, audit=AuditContext.command("issuetoken")
            )
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"Token {api_token.id} for '{user.username}', expires {api_token.expires_at}."
        )
        self.stdout.write(token)
