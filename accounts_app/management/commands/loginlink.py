from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts_app.login_links import login_link_url
from accounts_app.models import User


class Command(BaseCommand):
    help = "Print a fresh one-time login URL (valid 15 minutes) for an existing user."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist as exc:
            raise CommandError(f"no user named '{username}'") from exc
        if user.blocked:
            raise CommandError(f"user '{username}' is blocked")
        self.stdout.write(login_link_url(user=user))
